//! The dry run of an upgrade's migrations, for `plan`, `apply` and `migrate --dry-run`: the
//! state is copied into a scratch directory beside the home's run files (twice: `before/` and
//! `after/`, both from the same read), the scripts run on `after/`, and the two trees are
//! compared. The real state is only ever read.
//!
//! An upgrade whose scripts fail here is refused by the plan, so `apply` never stops an agent
//! for a migration that cannot succeed.

use std::path::Path;

use super::apply::Origins;
use super::inventory::Inventory;
use super::plan::{ChangeKind, DryRun, Plan};
use super::upgrade::{run_scripts, steps_for};
use crate::blueprint::Blueprint;
use crate::home::Home;
use crate::migrate::{preview, tree};

/// Runs the scripts that take the state of `name` from `from` to `bp`'s version on a scratch
/// copy and reports what they changed.
pub fn dry_run(home: &Home, name: &str, bp: &Blueprint, base: &Path, from: u32) -> DryRun {
    let failed = |e: &dyn std::error::Error| DryRun::Failed {
        error: crate::error_chain(e),
    };
    let state = home.state(name);
    if !state.is_dir() {
        return DryRun::NoState;
    }
    let steps = match steps_for(bp, base, from) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    let scratch = match scratch_dir(home) {
        Ok(d) => d,
        Err(e) => return failed(&e),
    };
    let (before, after) = (scratch.path().join("before"), scratch.path().join("after"));
    if let Err(e) = tree::copy_tree(&state, &before).and_then(|_| tree::copy_tree(&before, &after))
    {
        return failed(&e);
    }
    if let Err(e) = keep_links_shared(&state, &after, &scratch.path().join("links")) {
        return failed(&e);
    }
    if let Err(e) = run_scripts(&after, name, from, bp, &steps, &|_| {}) {
        return failed(&e);
    }
    match preview::diff_trees(&before, &after) {
        Ok(diff) => DryRun::Ok { diff },
        Err(e) => failed(&e),
    }
}

/// A copy holds plain files where the state has files with several hard links (perhaps to a
/// host file, which the real run refuses to touch): link each such copy once more, outside the
/// copied tree, so the scripts meet the same refusal in the dry run.
fn keep_links_shared(state: &Path, copy: &Path, links: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![std::path::PathBuf::new()];
    let mut n = 0u64;
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(state.join(&rel))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let rel = rel.join(entry.file_name());
            if meta.is_dir() {
                stack.push(rel);
            } else if meta.is_file() && meta.nlink() > 1 {
                std::fs::create_dir_all(links)?;
                std::fs::hard_link(copy.join(&rel), links.join(n.to_string()))?;
                n += 1;
            }
        }
    }
    Ok(())
}

/// A private scratch directory on the home's filesystem (so copies can be reflinks), removed
/// when dropped.
fn scratch_dir(home: &Home) -> std::io::Result<tempfile::TempDir> {
    let run = home.run_root();
    std::fs::create_dir_all(&run)?;
    tempfile::Builder::new().prefix(".dry-run-").tempdir_in(run)
}

/// Dry-runs every upgrade of `plan` (made from `inventory`) that has migrations; one whose
/// scripts fail becomes a refused change that says why.
pub fn dry_run_plan(home: &Home, plan: &mut Plan, inventory: &Inventory, origins: &Origins) {
    for c in plan.changes.iter_mut() {
        let (Some(m), Some(bp), Some(rec)) = (
            c.migration.as_mut(),
            c.after.as_ref(),
            inventory.get(&c.name),
        ) else {
            continue;
        };
        if c.kind != ChangeKind::Upgrade {
            continue;
        }
        let base = origins
            .by_name
            .get(&c.name)
            .map(|(_, b)| b.clone())
            .unwrap_or_default();
        let result = dry_run(home, &c.name, bp, &base, rec.version);
        if let DryRun::Failed { error } = &result {
            c.kind = ChangeKind::Refused;
            c.reasons.push(format!(
                "the dry run of its migrations failed: {error}; apply refuses this upgrade (the state is untouched): fix the script and plan again"
            ));
        }
        m.dry_run = Some(result);
    }
}
