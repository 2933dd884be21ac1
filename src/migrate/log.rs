//! The upgrade log, `logs/<name>/upgrade.jsonl`: one JSON line per step of an upgrade or
//! rollback, and every line a migration script printed (`nemoclaw logs NAME --kind upgrade`).

use std::io::Write as _;

use serde_json::{json, Value};

use crate::home::Home;

/// Appends one event; a log that cannot be written never fails an upgrade (it is reported on
/// stderr instead).
pub fn event(home: &Home, name: &str, event: &str, detail: Value) {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut line = json!({"ts": (ts * 1000.0).round() / 1000.0, "event": event});
    if let (Some(obj), Value::Object(extra)) = (line.as_object_mut(), detail) {
        obj.extend(extra);
    }
    let path = home.upgrade_log(name);
    let written = crate::home::create_dir_private(&home.logs(name))
        .map_err(std::io::Error::other)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
        })
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        tracing::warn!("cannot write the upgrade log {}: {e}", path.display());
    }
}
