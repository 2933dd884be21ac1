//! The effectful front of plan, apply and watch: load the source, read the inventory and the
//! live facts, and plan.

use crate::blueprint::set::LoadOptions;
use crate::home::Home;
use crate::source::{self, Loaded, SourceSpec};

use super::apply::Origins;
use super::dry_run::dry_run_plan;
use super::inventory::{Inventory, InventoryError};
use super::live;
use super::plan::{plan, DesiredEntry, Note, NoteKind, Plan, PlanError, PlanOptions};
use crate::migrate::journal;

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("{errors} error(s) in the blueprints (shown above); nothing was planned")]
    Invalid { errors: usize },
    #[error(transparent)]
    Plan(#[from] PlanError),
}

impl Prepared {
    /// Where each desired blueprint came from and the directory its relative paths start at.
    pub fn origins(&self) -> Origins {
        let mut o = Origins::default();
        for e in &self.loaded.set.blueprints {
            o.by_name.insert(
                e.blueprint.metadata.name.clone(),
                (self.loaded.source_for(&e.path), base_dir(&e.path)),
            );
        }
        o
    }
}

/// The directory a blueprint file's relative paths (migrations, guards, presets) start at.
pub fn base_dir(blueprint_file: &std::path::Path) -> std::path::PathBuf {
    let base = blueprint_file
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    std::fs::canonicalize(&base).unwrap_or(base)
}

/// Everything a plan was computed from, kept for apply.
pub struct Prepared {
    pub loaded: Loaded,
    pub inventory: Inventory,
    pub plan: Plan,
    /// Prune in effect (flag or the source config).
    pub prune: bool,
}

/// Loads the source and the inventory and plans. Invalid blueprints stop here, with the
/// diagnostics in `loaded` for the caller to show.
pub fn prepare(
    home: &Home,
    spec: &SourceSpec,
    load_opts: &LoadOptions,
    mut opts: PlanOptions,
) -> Result<Prepared, (PrepareError, Option<Loaded>)> {
    let loaded = source::load(spec, &home.cache(), load_opts).map_err(|e| (e.into(), None))?;
    if loaded.set.error_count() > 0 {
        let errors = loaded.set.error_count();
        return Err((PrepareError::Invalid { errors }, Some(loaded)));
    }
    opts.prune |= loaded.set.prune();
    let inventory = match Inventory::load(home) {
        Ok(i) => i,
        Err(e) => return Err((e.into(), Some(loaded))),
    };
    let actual: Vec<_> = inventory
        .records
        .iter()
        .map(|r| (r.clone(), live::observe(home, r)))
        .collect();
    let prune = opts.prune;
    match plan(&desired(home, &loaded), &actual, &opts) {
        Ok(plan) => {
            let mut p = Prepared {
                loaded,
                inventory,
                plan,
                prune,
            };
            note_interrupted_upgrades(home, &mut p.plan);
            let origins = p.origins();
            dry_run_plan(home, &mut p.plan, &p.inventory, &origins);
            super::agents::plan_installs(home, &mut p.plan, &origins);
            Ok(p)
        }
        Err(e) => Err((e.into(), Some(loaded))),
    }
}

/// A journal left by an interrupted upgrade: `apply` rolls it back before it plans, so the plan
/// says so (a plain `plan` changes nothing).
fn note_interrupted_upgrades(home: &Home, plan: &mut Plan) {
    for name in journal::pending(home) {
        let message = match journal::read(home, &name) {
            Ok(Some(j)) => format!(
                "an upgrade v{}→v{} was interrupted ({:?} step): the next apply restores its state and the old version first",
                j.from, j.to, j.phase
            ),
            Ok(None) => continue,
            Err(e) => crate::error_chain(&e),
        };
        plan.notes.push(Note {
            name,
            kind: NoteKind::InterruptedUpgrade,
            message,
        });
    }
}

/// The valid blueprints of a loaded source, with the migration steps its files provide and
/// the hash of the plugin each names (from the source, the home or built in).
pub fn desired(home: &Home, loaded: &Loaded) -> Vec<DesiredEntry> {
    loaded
        .set
        .blueprints
        .iter()
        .map(|e| DesiredEntry {
            blueprint: e.blueprint.clone(),
            migration_steps: source::migration_steps(&e.path, &e.blueprint),
            plugin_hash: crate::plugin::start::resolve(
                home,
                &e.blueprint,
                Some(&base_dir(&e.path)),
            )
            .ok()
            .map(|p| p.hash),
        })
        .collect()
}
