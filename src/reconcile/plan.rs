//! Planning: a pure function from (desired blueprints, deployed records with live facts) to
//! the actions that make the host match, each with its reasons.
//!
//! Conventions follow Terraform and Flux: `+ create`, `~ update in place` (network and
//! inference: hot reload, no restart), `~ upgrade vN→vM`, `-/+ replace` (agent, mounts,
//! resources, sandbox, lifecycle: restart needed), `- destroy` (only when pruning), `! restart`
//! (drift: died, or changed outside nemoclaw). A sandbox the user stopped, one whose supervisor
//! gave up after repeated crashes, a suspended blueprint and a deployed sandbox no longer in the
//! source are recorded states: shown as notes, never "repaired" behind the user's back.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::inventory::{blueprint_hash, Deployed, HoldKind};
use crate::blueprint::{defaults, Blueprint};

/// What is known of a deployed sandbox right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Live {
    /// The supervisor is alive. `hash` is the blueprint it runs, when it says.
    Running {
        healthy: Option<bool>,
        hash: Option<String>,
    },
    /// No supervisor: it crashed, was killed, or the host rebooted.
    Down,
    /// The supervisor gave up restarting the agent after repeated crashes.
    GaveUp { crashes: u32 },
}

/// A blueprint of the desired set, with the migration steps its source provides.
#[derive(Debug, Clone)]
pub struct DesiredEntry {
    pub blueprint: Blueprint,
    /// Version steps N that have a `vN.rhai` in the blueprint's migrations dir.
    pub migration_steps: Vec<u32>,
    /// The hash of the agent's plugin as the source resolves it (`None`: not known).
    pub plugin_hash: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Destroy deployed sandboxes whose blueprint is gone.
    pub prune: bool,
    /// Allow pruning when the desired set is empty.
    pub allow_empty: bool,
    /// Limit the plan to these names.
    pub targets: Vec<String>,
    /// Replace these even when unchanged (also brings back stopped or given-up sandboxes).
    pub replace: Vec<String>,
    /// Try these again although their last upgrade to the same blueprint failed.
    pub retry: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Create,
    Update,
    Upgrade,
    Replace,
    Restart,
    Destroy,
    /// Wanted but refused (a downgrade, or an upgrade whose migrations fail their dry run).
    Refused,
}

impl ChangeKind {
    /// The verb for progress lines: `create`, `update`, ...
    pub fn verb(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Upgrade => "upgrade",
            ChangeKind::Replace => "replace",
            ChangeKind::Restart => "restart",
            ChangeKind::Destroy => "destroy",
            ChangeKind::Refused => "refused",
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            ChangeKind::Create => "+",
            ChangeKind::Update | ChangeKind::Upgrade => "~",
            ChangeKind::Replace => "-/+",
            ChangeKind::Restart => "!",
            ChangeKind::Destroy => "-",
            ChangeKind::Refused => "x",
        }
    }
}

/// One action on one sandbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub name: String,
    #[serde(rename = "action")]
    pub kind: ChangeKind,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_version: Option<u32>,
    /// The deployed blueprint (absent for create).
    #[serde(skip)]
    pub before: Option<Blueprint>,
    /// The desired blueprint (absent for destroy).
    #[serde(skip)]
    pub after: Option<Blueprint>,
    /// The sandbox was stopped by the user: apply records the change but does not start it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stays_stopped: bool,
    /// For an upgrade: the state migrations it runs and their dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
    /// The agent install this change needs first (filled in by `prepare`, which looks in the
    /// agent cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install: Option<AgentInstall>,
}

/// An agent a change installs before it starts: setup runs once per plugin and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInstall {
    pub plugin: String,
    pub version: String,
    /// `openclaw 2026.9.6 (npm package `openclaw`)`.
    pub what: String,
    /// The cached install was made by a different setup step.
    pub reinstall: bool,
    /// The presets setup reaches the network through.
    pub egress: Vec<String>,
}

/// The state migrations of an upgrade.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    /// The versions N whose `vN.rhai` runs, in order.
    pub steps: Vec<u32>,
    /// What the scripts did to a scratch copy of the state (filled in by the dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<DryRun>,
}

/// The outcome of running an upgrade's scripts on a scratch copy of the state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum DryRun {
    /// The sandbox has no state yet: nothing to migrate.
    NoState,
    Ok {
        diff: crate::migrate::preview::StateDiff,
    },
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum NoteKind {
    StoppedByUser,
    GaveUp,
    Suspended,
    NotInSource,
    Drifted,
    UpgradeFailed,
    RolledBack,
    InterruptedUpgrade,
}

/// A recorded state that the plan leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    pub name: String,
    pub kind: NoteKind,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub upgrade: usize,
    pub replace: usize,
    pub destroy: usize,
    pub restart: usize,
    pub refused: usize,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.kind {
                ChangeKind::Create => s.create += 1,
                ChangeKind::Update => s.update += 1,
                ChangeKind::Upgrade => s.upgrade += 1,
                ChangeKind::Replace => s.replace += 1,
                ChangeKind::Destroy => s.destroy += 1,
                ChangeKind::Restart => s.restart += 1,
                ChangeKind::Refused => s.refused += 1,
            }
        }
        s
    }

    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the source has no blueprints, so pruning would destroy all {deployed} deployed sandboxes: refusing (pass --allow-empty if that is what you want)")]
    EmptySource { deployed: usize },
    #[error("--target {0}: no blueprint or deployed sandbox has that name")]
    UnknownTarget(String),
}

/// Top-level blueprint fields whose change is applied to a running sandbox without restarting it.
const IN_PLACE: &[&str] = &[
    "network",
    "inference",
    "metadata",
    "dependsOn",
    "suspend",
    "migrations",
];

/// Parts of the in-place sections that a running sandbox cannot take without a restart: the
/// DNS listener and the ingress forwards are planted when the sandbox starts.
const RESTART_WITHIN_IN_PLACE: &[&str] = &["network.dns", "network.ingress"];

/// Whether a change at `path` needs the agent restarted.
fn needs_restart(path: &str) -> bool {
    !IN_PLACE.contains(&top_level(path))
        || RESTART_WITHIN_IN_PLACE.iter().any(|p| {
            path == *p || path.starts_with(&format!("{p}.")) || path.starts_with(&format!("{p}["))
        })
}

/// Plans the changes that take `actual` to `desired`.
pub fn plan(
    desired: &[DesiredEntry],
    actual: &[(Deployed, Live)],
    opts: &PlanOptions,
) -> Result<Plan, PlanError> {
    let deployed: BTreeMap<&str, &(Deployed, Live)> =
        actual.iter().map(|a| (a.0.name.as_str(), a)).collect();
    let wanted: BTreeMap<&str, &DesiredEntry> = desired
        .iter()
        .map(|d| (d.blueprint.metadata.name.as_str(), d))
        .collect();
    for t in &opts.targets {
        if !deployed.contains_key(t.as_str()) && !wanted.contains_key(t.as_str()) {
            return Err(PlanError::UnknownTarget(t.clone()));
        }
    }
    if opts.prune && desired.is_empty() && !actual.is_empty() && !opts.allow_empty {
        return Err(PlanError::EmptySource {
            deployed: actual.len(),
        });
    }
    let in_scope = |name: &str| opts.targets.is_empty() || opts.targets.iter().any(|t| t == name);
    let mut out = Plan::default();

    for d in desired {
        let name = d.blueprint.metadata.name.as_str();
        if !in_scope(name) {
            continue;
        }
        let force = opts.replace.iter().any(|r| r == name);
        match deployed.get(name) {
            None if d.blueprint.suspend => note(
                &mut out,
                name,
                NoteKind::Suspended,
                "suspended: not created while `suspend: true`",
            ),
            None => out.changes.push(Change {
                name: name.into(),
                kind: ChangeKind::Create,
                reasons: vec!["not deployed yet".into()],
                from_version: None,
                to_version: Some(d.blueprint.metadata.version),
                before: None,
                after: Some(d.blueprint.clone()),
                stays_stopped: false,
                migration: None,
                install: None,
            }),
            Some((rec, live)) => {
                let retry = opts.retry.iter().any(|r| r == name);
                plan_existing(&mut out, d, rec, live, force, retry)
            }
        }
    }

    for (name, (rec, _)) in &deployed {
        if wanted.contains_key(name) || !in_scope(name) {
            continue;
        }
        if opts.prune {
            out.changes.push(Change {
                name: (*name).into(),
                kind: ChangeKind::Destroy,
                reasons: vec!["its blueprint is gone from the source (prune)".into()],
                from_version: Some(rec.version),
                to_version: None,
                before: Some(rec.blueprint.clone()),
                after: None,
                stays_stopped: false,
                migration: None,
                install: None,
            });
        } else {
            note(&mut out, name, NoteKind::NotInSource, "not in the source: kept (apply --prune, or `prune: true` in nemoclaw.yaml, destroys it)");
        }
    }
    order_by_dependencies(&mut out.changes, desired);
    Ok(out)
}

fn note(out: &mut Plan, name: &str, kind: NoteKind, message: &str) {
    out.notes.push(Note {
        name: name.into(),
        kind,
        message: message.into(),
    });
}

/// Whether the desired plugin's files differ from the deployed copy's (both known).
fn plugin_changed(d: &DesiredEntry, rec: &Deployed) -> bool {
    matches!((&d.plugin_hash, &rec.plugin_hash), (Some(a), Some(b)) if a != b)
}

fn plan_existing(
    out: &mut Plan,
    d: &DesiredEntry,
    rec: &Deployed,
    live: &Live,
    force: bool,
    retry: bool,
) {
    let name = rec.name.as_str();
    let held = rec
        .hold
        .as_ref()
        .filter(|h| !force && !retry && h.desired_hash == blueprint_hash(&d.blueprint));
    if let Some(h) = held {
        let kind = match h.kind {
            HoldKind::UpgradeFailed => NoteKind::UpgradeFailed,
            HoldKind::RolledBack => NoteKind::RolledBack,
        };
        note(out, name, kind, &h.message);
    }
    // A held sandbox is kept at its recorded blueprint: only drift is acted on.
    let new = if held.is_some() {
        &rec.blueprint
    } else {
        &d.blueprint
    };
    if new.suspend && !force {
        note(
            out,
            name,
            NoteKind::Suspended,
            "suspended: left exactly as it is",
        );
        return;
    }
    let change = |kind, reasons: Vec<String>| Change {
        name: name.into(),
        kind,
        reasons,
        from_version: Some(rec.version),
        to_version: Some(new.metadata.version),
        before: Some(rec.blueprint.clone()),
        after: Some(new.clone()),
        stays_stopped: rec.stopped && !force,
        migration: None,
        install: None,
    };
    let unchanged = blueprint_hash(new) == rec.hash;
    if unchanged {
        if force {
            out.changes.push(change(
                ChangeKind::Replace,
                vec!["replacement requested (--replace)".into()],
            ));
            return;
        }
        if held.is_none() && plugin_changed(d, rec) {
            let kind = new.agent.type_or(defaults::AGENT_TYPE);
            out.changes.push(change(
                ChangeKind::Replace,
                vec![format!("its agent's plugin `{kind}` changed (a file of the plugin differs from the deployed copy)")],
            ));
            return;
        }
        if rec.stopped {
            note(
                out,
                name,
                NoteKind::StoppedByUser,
                &format!("stopped by the user: `nemoclaw start {name}` brings it back"),
            );
            return;
        }
        match live {
            Live::GaveUp { crashes } => note(
                out,
                name,
                NoteKind::GaveUp,
                &format!("gave up after {crashes} crashes: see `nemoclaw logs {name}`, then `nemoclaw start {name}` (or apply --replace {name})"),
            ),
            Live::Down | Live::Running { .. } => {
                let drift = match live {
                    Live::Down => Some("the supervisor is not running (it crashed, was killed, or the host rebooted)".to_string()),
                    Live::Running { hash: Some(h), .. } if *h != rec.hash => Some("it runs a blueprint other than the recorded one (changed outside nemoclaw)".to_string()),
                    _ => None,
                };
                if let Some(reason) = drift {
                    if new.lifecycle.restart_on_drift {
                        out.changes.push(change(ChangeKind::Restart, vec![reason]));
                    } else {
                        note(out, name, NoteKind::Drifted, &format!("drifted ({reason}); left alone: `restartOnDrift: false`"));
                    }
                }
            }
        }
        return;
    }

    let changed = changed_paths(&rec.blueprint, new);
    let (old_v, new_v) = (rec.version, new.metadata.version);
    if new_v < old_v {
        out.changes.push(change(
            ChangeKind::Refused,
            vec![format!("version went down from {old_v} to {new_v}: downgrades are not supported (restore the state from snapshots/ and `destroy` then `apply` to start over)")],
        ));
        return;
    }
    if new_v > old_v {
        let mut steps: Vec<u32> = d
            .migration_steps
            .iter()
            .copied()
            .filter(|s| *s > old_v && *s <= new_v)
            .collect();
        steps.sort_unstable();
        let mut reasons = vec![format!("version {old_v} → {new_v}")];
        if !steps.is_empty() {
            let scripts: Vec<String> = steps.iter().map(|s| format!("v{s}.rhai")).collect();
            reasons.push(format!(
                "state migrations {} run on the stopped agent's state after a snapshot; any failure restores it",
                scripts.join(", ")
            ));
        }
        reasons.extend(
            describe(&changed)
                .into_iter()
                .filter(|r| !r.starts_with("metadata.version")),
        );
        let mut c = change(ChangeKind::Upgrade, reasons);
        c.migration = (!steps.is_empty()).then_some(Migration {
            steps,
            dry_run: None,
        });
        out.changes.push(c);
        return;
    }
    // The gateway serves inference only if the sandbox started with an inference section.
    let inference_toggled = rec.blueprint.inference.is_some() != new.inference.is_some();
    if force || inference_toggled || changed.iter().any(|p| needs_restart(p)) {
        let mut reasons = replace_reasons(&changed, force);
        if inference_toggled {
            reasons.insert(
                0,
                "the inference section was added or removed (needs a restart)".into(),
            );
        }
        out.changes.push(change(ChangeKind::Replace, reasons));
    } else {
        out.changes
            .push(change(ChangeKind::Update, describe(&changed)));
    }
}

/// Reasons for a replace: the fields that force the restart first, then the rest.
fn replace_reasons(changed: &[String], force: bool) -> Vec<String> {
    let (restart, rest): (Vec<String>, Vec<String>) =
        changed.iter().cloned().partition(|p| needs_restart(p));
    let mut out = Vec::new();
    if force {
        out.push("replacement requested (--replace)".to_string());
    }
    out.extend(
        describe(&restart)
            .into_iter()
            .map(|r| format!("{r} (needs a restart)")),
    );
    out.extend(describe(&rest));
    out
}

fn top_level(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or(path)
}

/// At most six changed paths, then a count of the rest.
fn describe(changed: &[String]) -> Vec<String> {
    const MAX: usize = 6;
    let mut out: Vec<String> = changed
        .iter()
        .take(MAX)
        .map(|p| format!("{p} changed"))
        .collect();
    if changed.len() > MAX {
        out.push(format!("and {} more fields", changed.len() - MAX));
    }
    out
}

/// The paths of the fields that differ between two blueprints (leaves, or the smallest
/// containing field when a list changed length).
pub fn changed_paths(old: &Blueprint, new: &Blueprint) -> Vec<String> {
    let a = serde_json::to_value(old).expect("a blueprint always serialises");
    let b = serde_json::to_value(new).expect("a blueprint always serialises");
    let mut out = Vec::new();
    diff_values("", &a, &b, &mut out);
    out
}

fn diff_values(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    let empty = Value::Object(Default::default());
    // A section left out (its default) compares as an empty one, so the leaf that changed is named.
    let (a, b) = match (a, b) {
        (Value::Null, Value::Object(_)) => (&empty, b),
        (Value::Object(_), Value::Null) => (a, &empty),
        _ => (a, b),
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = Value::Null;
                diff_values(
                    &join(k),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ => out.push(path.to_string()),
    }
}

/// Sorts changes so a sandbox comes after what it depends on; destroys come last, in reverse.
fn order_by_dependencies(changes: &mut [Change], desired: &[DesiredEntry]) {
    let deps: BTreeMap<&str, &Vec<String>> = desired
        .iter()
        .map(|d| (d.blueprint.metadata.name.as_str(), &d.blueprint.depends_on))
        .collect();
    let mut rank: BTreeMap<String, usize> = BTreeMap::new();
    fn depth(
        n: &str,
        deps: &BTreeMap<&str, &Vec<String>>,
        rank: &mut BTreeMap<String, usize>,
        guard: usize,
    ) -> usize {
        if let Some(r) = rank.get(n) {
            return *r;
        }
        let r = match deps.get(n) {
            Some(ds) if guard < 64 => ds
                .iter()
                .filter(|d| d.as_str() != n)
                .map(|d| depth(d, deps, rank, guard + 1) + 1)
                .max()
                .unwrap_or(0),
            _ => 0,
        };
        rank.insert(n.to_string(), r);
        r
    }
    let names: Vec<String> = changes.iter().map(|c| c.name.clone()).collect();
    for n in &names {
        depth(n, &deps, &mut rank, 0);
    }
    changes.sort_by(|a, b| {
        let da = a.kind == ChangeKind::Destroy;
        let db = b.kind == ChangeKind::Destroy;
        da.cmp(&db).then_with(|| {
            if da {
                rank[&b.name].cmp(&rank[&a.name]).then(a.name.cmp(&b.name))
            } else {
                rank[&a.name].cmp(&rank[&b.name]).then(a.name.cmp(&b.name))
            }
        })
    });
}
