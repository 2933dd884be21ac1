//! `logs/<name>/egress.jsonl`: one JSON line per egress decision, allowed or denied.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// One decision: written when a denied connection is refused, or when an allowed one closes
/// (so it carries the byte counts and the duration).
#[derive(Debug, Clone, Serialize)]
pub struct EgressRecord {
    pub time: String,
    pub sandbox: String,
    /// `explicit` (HTTP_PROXY), `transparent` (redirected by the fence) or `ingress`.
    pub mode: &'static str,
    pub host: String,
    pub port: u16,
    /// The address dialled (allowed connections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// `allow` or `deny`.
    pub decision: &'static str,
    pub rule: String,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl EgressRecord {
    pub fn new(
        sandbox: &str,
        mode: &'static str,
        host: &str,
        port: u16,
        allowed: bool,
        rule: &str,
    ) -> EgressRecord {
        EgressRecord {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            sandbox: sandbox.to_string(),
            mode,
            host: host.to_string(),
            port,
            addr: None,
            decision: if allowed { "allow" } else { "deny" },
            rule: rule.to_string(),
            bytes_out: 0,
            bytes_in: 0,
            duration_ms: 0.0,
            error: None,
        }
    }

    pub fn took(mut self, d: Duration) -> EgressRecord {
        self.duration_ms = (d.as_secs_f64() * 1e6).round() / 1e3;
        self
    }
}

/// An append-only JSON-lines file shared by every connection handler.
#[derive(Debug, Clone)]
pub struct EgressLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl EgressLog {
    /// Opens (creating the directory and file) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<EgressLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(EgressLog {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line; a failing log never breaks traffic (it is reported by tracing).
    pub fn write(&self, rec: &EgressRecord) {
        let mut line = serde_json::to_string(rec).unwrap_or_default();
        line.push('\n');
        // A poisoned lock still holds a usable file: each write is one `write_all` of a whole
        // line, so a panic elsewhere cannot leave the file in a state later lines depend on.
        let mut f = crate::sync::lock(&self.file);
        if let Err(e) = f.write_all(line.as_bytes()) {
            tracing::warn!(path = %self.path.display(), error = %e, "writing the egress log");
        }
    }
}
