//! Executing a plan: each change in dependency order, independent sandboxes in parallel
//! (bounded), each step recorded in the inventory so that a crash at any point converges on the
//! next apply.
//!
//! Crash safety comes from the order of effects: a record is written (atomically) before the
//! sandbox it describes is started, and removed only after its sandbox is stopped. A crash
//! between the two leaves either a record whose supervisor is down (the next plan restarts it)
//! or a running sandbox the record already names; agent state lives on the host throughout.
//!
//! The sandbox side sits behind [`Runtime`], so this logic is tested without root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::inventory::{
    self, blueprint_hash, Deployed, Inventory, InventoryError, SourceRef, RECORD_FORMAT,
};
use super::plan::{Change, ChangeKind, Plan};
use super::render::canonical_yaml;
use super::upgrade::{self, Timings, Upgrade, UpgradeError};
use crate::blueprint::Blueprint;
use crate::home::{write_atomic, Home};
use crate::policy::presets;

/// What a [`Runtime`] reports when it fails; its source chain is kept.
pub type RuntimeError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What apply needs from the sandbox runtime.
pub trait Runtime: Sync {
    /// Starts the supervisor of `name` from `run/<name>/blueprint.yaml` and waits until the
    /// agent runs (the health gate).
    fn start(&self, name: &str) -> Result<(), RuntimeError>;
    /// Stops the sandbox (SIGTERM, stop timeout, SIGKILL) and its supervisor; state is kept.
    fn stop(&self, name: &str) -> Result<(), RuntimeError>;
    /// Waits until the started sandbox passes its health check (at once without one): the
    /// health gate of an upgrade.
    fn wait_healthy(&self, name: &str) -> Result<(), RuntimeError>;
    /// Applies a changed network, inference or lifecycle policy without restarting the agent.
    fn reload(&self, name: &str) -> Result<(), RuntimeError>;
    fn is_running(&self, name: &str) -> bool;
}

/// Why one change failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{}", .0.join("; "))]
    Refused(Vec<String>),
    #[error("skipped: its dependency `{0}` failed")]
    DependencyFailed(String),
    #[error("internal: no desired blueprint")]
    NoDesired,
    #[error(transparent)]
    Runtime(RuntimeError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Home(#[from] crate::home::HomeError),
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
    /// The agent's plugin could not be found or saved.
    #[error(transparent)]
    Agent(Box<crate::plugin::start::StartError>),
}

impl From<RuntimeError> for ChangeError {
    fn from(e: RuntimeError) -> ChangeError {
        ChangeError::Runtime(e)
    }
}

/// What `execute` reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    Started { name: &'a str, kind: ChangeKind },
    Finished(&'a Outcome),
}

/// The result of one change.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub kind: ChangeKind,
    pub result: Result<(), ChangeError>,
    pub elapsed: Duration,
    /// How long each step of a committed upgrade took.
    pub upgrade: Option<Timings>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The self-contained copy of a blueprint that a supervisor runs from `run/<name>/`: paths
/// relative to the source (guards, mock replies) made absolute, migrations left out, presets the
/// source defines in `presets/NAME.yaml` inlined into `allowedDomains` (built-in and home
/// presets stay by name), so the deployment no longer depends on the source checkout.
pub fn resolve_paths(bp: &Blueprint, base: &Path) -> Blueprint {
    let mut bp = bp.clone();
    let egress = &mut bp.network.egress;
    let mut kept = Vec::new();
    for name in std::mem::take(&mut egress.presets) {
        let parsed = presets::find_file(&base.join("presets"), &name)
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| presets::parse_preset_file(&t).ok());
        match parsed {
            Some(p) => egress.allowed_domains.extend(p.domains),
            None => kept.push(name),
        }
    }
    egress.presets = kept;
    let abs = |p: &mut std::path::PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    if let Some(inf) = &mut bp.inference {
        for g in &mut inf.guards {
            abs(&mut g.script);
        }
        for b in &mut inf.backends {
            if let Some(r) = b.mock.as_mut().and_then(|m| m.replies.as_mut()) {
                abs(r);
            }
        }
    }
    // Migrations run from the source, before the supervisor starts; the copy it runs from
    // has none (the source's scripts for newer versions would not validate against it).
    bp.migrations = None;
    bp
}

/// Where each desired blueprint came from, and the directory its relative paths are relative to.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    pub by_name: BTreeMap<String, (SourceRef, std::path::PathBuf)>,
}

/// What every change of one apply shares.
pub(super) struct Ctx<'a> {
    pub home: &'a Home,
    pub runtime: &'a dyn Runtime,
    pub origins: &'a Origins,
    /// Serialises inventory writes (records and the generation).
    pub inventory: Mutex<()>,
}

impl<'a> Ctx<'a> {
    pub fn new(home: &'a Home, runtime: &'a dyn Runtime, origins: &'a Origins) -> Ctx<'a> {
        Ctx {
            home,
            runtime,
            origins,
            inventory: Mutex::new(()),
        }
    }

    /// The directory the desired blueprint of `name` was read from.
    fn base(&self, name: &str) -> std::path::PathBuf {
        self.origins
            .by_name
            .get(name)
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    }

    /// Records the desired blueprint of `c` as deployed (and its self-contained copy).
    pub fn record(&self, c: &Change, stopped: bool) -> Result<(), ChangeError> {
        let bp = c.after.as_ref().ok_or(ChangeError::NoDesired)?;
        let (source, base) = self
            .origins
            .by_name
            .get(&c.name)
            .cloned()
            .unwrap_or_default();
        let _g = crate::sync::lock(&self.inventory);
        let existing = Inventory::load(self.home)?.get(&c.name).cloned();
        let rec = Deployed {
            format: RECORD_FORMAT,
            name: c.name.clone(),
            hash: blueprint_hash(bp),
            version: bp.metadata.version,
            blueprint: bp.clone(),
            source,
            created_at: existing.as_ref().map_or_else(now, |e| e.created_at),
            applied_at: now(),
            stopped,
            hold: None,
            plugin_hash: None,
        };
        crate::home::create_dir_private(&self.home.run_dir(&c.name))?;
        let deployed = canonical_yaml(&resolve_paths(bp, &base));
        write_atomic(
            &self.home.deployed_blueprint(&c.name),
            deployed.as_bytes(),
            0o600,
        )?;
        let plugin = super::agents::plugin_for(self.home, &c.name, bp, self.origins)
            .map_err(|e| ChangeError::Agent(Box::new(e)))?;
        crate::plugin::start::save_deployed(self.home, &c.name, &plugin)
            .map_err(|e| ChangeError::Agent(Box::new(e)))?;
        let rec = Deployed {
            plugin_hash: Some(plugin.hash),
            ..rec
        };
        inventory::save_record(self.home, &rec)?;
        inventory::bump_generation(self.home)?;
        Ok(())
    }

    fn forget(&self, name: &str) -> Result<(), ChangeError> {
        let _g = crate::sync::lock(&self.inventory);
        inventory::remove_record(self.home, name)?;
        let _ = std::fs::remove_file(self.home.deployed_blueprint(name));
        inventory::bump_generation(self.home)?;
        Ok(())
    }

    /// Runs `c` as an upgrade transaction.
    fn upgrade(&self, c: &Change) -> Result<Option<Timings>, ChangeError> {
        let old = upgrade::deployed(self.home, &c.name)?;
        let new = c.after.as_ref().ok_or(ChangeError::NoDesired)?;
        let steps = upgrade::steps_for(new, &self.base(&c.name), old.version)
            .map_err(UpgradeError::from)?;
        let t = upgrade::run(
            self,
            Upgrade {
                change: c,
                old,
                steps,
                start: !c.stays_stopped,
                stopped_after: c.stays_stopped,
            },
        )?;
        Ok(Some(t))
    }

    fn execute(&self, c: &Change) -> Result<Option<Timings>, ChangeError> {
        match c.kind {
            ChangeKind::Refused => Err(ChangeError::Refused(c.reasons.clone())),
            ChangeKind::Upgrade => self.upgrade(c),
            _ => self.apply_change(c).map(|()| None),
        }
    }

    fn apply_change(&self, c: &Change) -> Result<(), ChangeError> {
        let rt = self.runtime;
        match c.kind {
            ChangeKind::Refused | ChangeKind::Upgrade => unreachable!("handled by execute"),
            _ if c.stays_stopped => self.record(c, true),
            ChangeKind::Create => {
                self.record(c, false)?;
                if rt.is_running(&c.name) {
                    // A crash after a start but before the record: the sandbox is ours already.
                    Ok(rt.reload(&c.name)?)
                } else {
                    Ok(rt.start(&c.name)?)
                }
            }
            ChangeKind::Update => {
                self.record(c, false)?;
                if rt.is_running(&c.name) {
                    Ok(rt.reload(&c.name)?)
                } else {
                    Ok(rt.start(&c.name)?)
                }
            }
            ChangeKind::Replace => {
                rt.stop(&c.name)?;
                self.record(c, false)?;
                Ok(rt.start(&c.name)?)
            }
            ChangeKind::Restart => {
                // Bring a crashed or drifted sandbox back to its recorded blueprint.
                if rt.is_running(&c.name) {
                    rt.stop(&c.name)?;
                }
                if c.after.is_some() {
                    self.record(c, false)?;
                }
                Ok(rt.start(&c.name)?)
            }
            ChangeKind::Destroy => {
                rt.stop(&c.name)?;
                self.forget(&c.name)
            }
        }
    }
}

/// Executes `plan`. Changes run level by level of the dependency graph; within a level up to
/// `parallel` at a time. A change whose dependency failed is skipped. `progress` hears of each
/// change as it starts and as it finishes.
pub fn execute(
    home: &Home,
    plan: &Plan,
    origins: &Origins,
    runtime: &dyn Runtime,
    parallel: usize,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Vec<Outcome> {
    let ctx = Ctx::new(home, runtime, origins);
    let deps: BTreeMap<&str, BTreeSet<&str>> = plan
        .changes
        .iter()
        .map(|c| {
            let d = c
                .after
                .as_ref()
                .map(|b| b.depends_on.iter().map(String::as_str).collect())
                .unwrap_or_default();
            (c.name.as_str(), d)
        })
        .collect();
    let mut done: BTreeMap<String, bool> = BTreeMap::new();
    let mut outcomes = Vec::new();
    let mut pending: Vec<&Change> = plan.changes.iter().collect();
    while !pending.is_empty() {
        // Ready: no dependency is still pending. (Validation refuses cycles; should one slip
        // through, everything left runs rather than looping forever.)
        let waiting: BTreeSet<&str> = pending.iter().map(|c| c.name.as_str()).collect();
        let (mut ready, mut rest): (Vec<&Change>, Vec<&Change>) = pending.iter().partition(|c| {
            deps[c.name.as_str()]
                .iter()
                .all(|d| *d == c.name || !waiting.contains(d))
        });
        if ready.is_empty() {
            ready = std::mem::take(&mut rest);
        }
        for chunk in ready.chunks(parallel.max(1)) {
            let results: Vec<Outcome> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|c| {
                        let ctx = &ctx;
                        let failed_dep = deps[c.name.as_str()]
                            .iter()
                            .find(|d| done.get(**d) == Some(&false))
                            .map(|d| d.to_string());
                        s.spawn(move || {
                            progress(Progress::Started {
                                name: &c.name,
                                kind: c.kind,
                            });
                            let t = Instant::now();
                            let result = match failed_dep {
                                Some(d) => Err(ChangeError::DependencyFailed(d)),
                                None => ctx.execute(c),
                            };
                            let (result, upgrade) = match result {
                                Ok(u) => (Ok(()), u),
                                Err(e) => (Err(e), None),
                            };
                            let o = Outcome {
                                name: c.name.clone(),
                                kind: c.kind,
                                result,
                                elapsed: t.elapsed(),
                                upgrade,
                            };
                            progress(Progress::Finished(&o));
                            o
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("apply worker panicked"))
                    .collect()
            });
            for o in results {
                done.insert(o.name.clone(), o.result.is_ok());
                outcomes.push(o);
            }
        }
        pending = rest;
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::load::parse_str;
    use crate::reconcile::plan::{plan, DesiredEntry, PlanOptions};

    use crate::reconcile::fake_runtime::Fake;

    fn bp(name: &str, extra: &str) -> DesiredEntry {
        let blueprint = parse_str(&format!("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: 1\nagent:\n  type: demo\n{extra}")).unwrap();
        DesiredEntry {
            blueprint,
            migration_steps: vec![],
            plugin_hash: None,
        }
    }

    fn apply(home: &Home, rt: &Fake, desired: &[DesiredEntry], opts: &PlanOptions) -> Vec<Outcome> {
        let p = plan(desired, &rt.actual(home), opts).unwrap();
        execute(home, &p, &Origins::default(), rt, 4, &|_| {})
    }

    #[test]
    fn create_update_replace_destroy_converge_and_apply_twice_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let rt = Fake::default();
        let v1 = [bp("db", ""), bp("web", "dependsOn: [db]\n")];
        let out = apply(&home, &rt, &v1, &PlanOptions::default());
        assert!(out.iter().all(|o| o.result.is_ok()));
        assert_eq!(
            *rt.calls.lock().unwrap(),
            ["start db", "start web"],
            "dependencies first"
        );
        assert!(home.deployed_blueprint("web").is_file());
        assert!(
            apply(&home, &rt, &v1, &PlanOptions::default()).is_empty(),
            "second apply is a no-op"
        );

        rt.calls.lock().unwrap().clear();
        let v2 = [
            bp(
                "db",
                "network:\n  egress:\n    allowedDomains: [pypi.org]\n",
            ),
            bp("web", "dependsOn: [db]\nresources:\n  memory: 1Gi\n"),
        ];
        apply(&home, &rt, &v2, &PlanOptions::default());
        assert_eq!(
            *rt.calls.lock().unwrap(),
            ["reload db", "stop web", "start web"]
        );

        rt.calls.lock().unwrap().clear();
        apply(
            &home,
            &rt,
            &v2[..1],
            &PlanOptions {
                prune: true,
                ..Default::default()
            },
        );
        assert_eq!(*rt.calls.lock().unwrap(), ["stop web"]);
        assert!(Inventory::load(&home).unwrap().get("web").is_none());
        assert!(apply(
            &home,
            &rt,
            &v2[..1],
            &PlanOptions {
                prune: true,
                ..Default::default()
            }
        )
        .is_empty());
    }

    #[test]
    fn a_crash_between_record_and_start_converges() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let rt = Fake::default();
        let want = [bp("a", "")];
        // Simulate a crash after the record was written and before the start: record only.
        let p = plan(&want, &[], &PlanOptions::default()).unwrap();
        let origins = Origins::default();
        let ctx = Ctx::new(&home, &rt, &origins);
        ctx.record(&p.changes[0], false).unwrap();
        // The next apply sees the record with no supervisor and restarts it.
        let out = apply(&home, &rt, &want, &PlanOptions::default());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, ChangeKind::Restart);
        assert!(rt.is_running("a"));
        assert!(apply(&home, &rt, &want, &PlanOptions::default()).is_empty());
    }

    #[test]
    fn a_failed_start_skips_its_dependents_and_generation_moves() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let rt = Fake {
            fail_start: ["db".to_string()].into(),
            ..Default::default()
        };
        let before = inventory::read_generation(&home).unwrap();
        let out = apply(
            &home,
            &rt,
            &[bp("db", ""), bp("web", "dependsOn: [db]\n")],
            &PlanOptions::default(),
        );
        let err = |o: &Outcome| o.result.as_ref().map_err(ToString::to_string).err();
        assert_eq!(err(&out[0]), Some("agent exited with 1".into()));
        assert_eq!(
            err(&out[1]),
            Some("skipped: its dependency `db` failed".into())
        );
        assert!(!rt.calls.lock().unwrap().contains(&"start web".to_string()));
        assert!(inventory::read_generation(&home).unwrap() > before);
    }

    #[test]
    fn source_presets_are_inlined_and_others_kept_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("presets")).unwrap();
        std::fs::write(
            dir.path().join("presets/wiki.yaml"),
            "domains: [wiki.example.com]\n",
        )
        .unwrap();
        let e = bp("a", "network:\n  egress:\n    presets: [github, wiki]\n");
        let r = resolve_paths(&e.blueprint, dir.path());
        assert_eq!(r.network.egress.presets, ["github"]);
        assert_eq!(
            r.network.egress.allowed_domains,
            [crate::blueprint::DomainRule::Name(
                "wiki.example.com".into()
            )]
        );
    }

    #[test]
    fn relative_paths_are_resolved_in_the_deployed_copy() {
        let e = bp("a", "inference:\n  backends:\n    - name: m\n      kind: mock\n      mock: {replies: replies.yaml}\n  allowedModels: [m]\n  guards:\n    - script: guards/g.rhai\n");
        let r = resolve_paths(&e.blueprint, Path::new("/src"));
        let inf = r.inference.unwrap();
        assert_eq!(inf.guards[0].script, Path::new("/src/guards/g.rhai"));
        assert_eq!(
            inf.backends[0].mock.as_ref().unwrap().replies.as_deref(),
            Some(Path::new("/src/replies.yaml"))
        );
    }
}
