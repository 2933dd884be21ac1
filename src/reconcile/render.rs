//! Showing a plan: per sandbox its action and reasons and a unified diff of the blueprint
//! (deployed → desired), then the Terraform-style summary line; or a versioned JSON document.

use std::fmt::Write as _;

use serde_json::json;
use similar::TextDiff;

use super::plan::{Change, ChangeKind, DryRun, Plan};
use crate::blueprint::Blueprint;

/// The version of the `plan --json` document.
pub const PLAN_JSON_VERSION: u32 = 1;

/// The canonical YAML of a blueprint, the text plan diffs are computed on. Credentials are
/// references, so no secret can appear in it.
pub fn canonical_yaml(bp: &Blueprint) -> String {
    serde_saphyr::to_string(bp).expect("a blueprint always serialises")
}

/// The unified diff of a change's blueprint, deployed → desired.
pub fn change_diff(c: &Change) -> String {
    let before = c.before.as_ref().map(canonical_yaml).unwrap_or_default();
    let after = c.after.as_ref().map(canonical_yaml).unwrap_or_default();
    if before == after {
        return String::new();
    }
    let (old_name, new_name) = (
        format!("deployed/{}", c.name),
        format!("desired/{}", c.name),
    );
    TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &new_name)
        .to_string()
}

fn headline(c: &Change) -> String {
    let v = |n: Option<u32>| n.map(|v| format!("v{v}")).unwrap_or_default();
    let what = match c.kind {
        ChangeKind::Create => format!("create {} ({})", c.name, v(c.to_version)),
        ChangeKind::Update => format!("update {} in place (hot reload, no restart)", c.name),
        ChangeKind::Upgrade => format!(
            "upgrade {} {}→{}",
            c.name,
            v(c.from_version),
            v(c.to_version)
        ),
        ChangeKind::Replace => format!("replace {} (restart)", c.name),
        ChangeKind::Restart => format!("restart {}", c.name),
        ChangeKind::Destroy => format!("destroy {}", c.name),
        ChangeKind::Refused => format!("refused {}", c.name),
    };
    let stopped = if c.stays_stopped {
        " [stopped: the change is recorded, the sandbox stays stopped]"
    } else {
        ""
    };
    format!("{} {what}{stopped}", c.kind.symbol())
}

/// What the blueprint's egress presets expand to, so a plan shows every domain it opens.
fn presets_line(bp: &Blueprint) -> Option<String> {
    let presets = &bp.network.egress.presets;
    if presets.is_empty() {
        return None;
    }
    let parts: Vec<String> = presets
        .iter()
        .map(|p| match crate::policy::presets::builtin(p) {
            Some(domains) => format!("{p} = {}", domains.join(", ")),
            None => format!("{p} = (user preset, presets/{p}.yaml)"),
        })
        .collect();
    Some(format!("egress presets: {}", parts.join("; ")))
}

/// What the migrations did to a scratch copy of the state.
fn render_dry_run(out: &mut String, dry: &DryRun) {
    match dry {
        DryRun::NoState => {
            let _ = writeln!(
                out,
                "    migration dry run: no state yet, nothing to migrate"
            );
        }
        DryRun::Failed { .. } => {}
        DryRun::Ok { diff } => {
            let _ = writeln!(
                out,
                "\n    migration dry run (on a scratch copy of the state):"
            );
            out.push_str(&crate::migrate::preview::render(diff, "      "));
        }
    }
}

/// The summary line.
pub fn summary_line(plan: &Plan) -> String {
    if !plan.has_changes() {
        return "No changes. Sandboxes match the blueprints.".into();
    }
    let s = plan.summary();
    let mut line = format!(
        "Plan: {} to create, {} to update, {} to upgrade, {} to replace, {} to destroy",
        s.create, s.update, s.upgrade, s.replace, s.destroy
    );
    if s.restart > 0 {
        let _ = write!(line, ", {} to restart", s.restart);
    }
    if s.refused > 0 {
        let _ = write!(line, "; {} refused", s.refused);
    }
    line.push('.');
    line
}

fn presets_list(p: &[String]) -> String {
    if p.is_empty() {
        "none".into()
    } else {
        p.join(", ")
    }
}

/// The human rendering. `color` adds ANSI colours to diff lines (for terminals).
pub fn render_human(plan: &Plan, source: Option<&str>, color: bool) -> String {
    let mut out = String::new();
    if let Some(s) = source {
        let _ = writeln!(out, "Source: {s}\n");
    }
    for c in &plan.changes {
        let _ = writeln!(out, "{}", headline(c));
        for r in &c.reasons {
            let _ = writeln!(out, "    {r}");
        }
        if let Some(line) = c.after.as_ref().and_then(presets_line) {
            let _ = writeln!(out, "    {line}");
        }
        if let Some(i) = &c.install {
            let how = if i.reinstall {
                "reinstalls"
            } else {
                "installs"
            };
            let _ = writeln!(
                out,
                "    {how} {} first, in a setup sandbox (egress: {})",
                i.what,
                presets_list(&i.egress)
            );
        }
        if let Some(dry) = c.migration.as_ref().and_then(|m| m.dry_run.as_ref()) {
            render_dry_run(&mut out, dry);
        }
        let diff = change_diff(c);
        if !diff.is_empty() {
            out.push('\n');
            for line in diff.lines() {
                let painted = match (color, line.chars().next()) {
                    (true, Some('+')) if !line.starts_with("+++") => {
                        format!("\x1b[32m{line}\x1b[0m")
                    }
                    (true, Some('-')) if !line.starts_with("---") => {
                        format!("\x1b[31m{line}\x1b[0m")
                    }
                    (true, Some('@')) => format!("\x1b[36m{line}\x1b[0m"),
                    _ => line.to_string(),
                };
                let _ = writeln!(out, "    {painted}");
            }
        }
        out.push('\n');
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "Left alone:");
        for n in &plan.notes {
            let _ = writeln!(out, "    {}: {}", n.name, n.message);
        }
        out.push('\n');
    }
    out.push_str(&summary_line(plan));
    out.push('\n');
    out
}

/// The `--json` document.
pub fn render_json(plan: &Plan, source: &serde_json::Value, generation: u64) -> serde_json::Value {
    let s = plan.summary();
    json!({
        "version": PLAN_JSON_VERSION,
        "source": source,
        "inventoryGeneration": generation,
        "hasChanges": plan.has_changes(),
        "summary": s,
        "changes": plan.changes.iter().map(|c| {
            let mut v = serde_json::to_value(c).expect("a change always serialises");
            v["diff"] = json!(change_diff(c));
            v
        }).collect::<Vec<_>>(),
        "notes": plan.notes,
    })
}
