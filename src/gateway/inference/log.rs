//! One JSON line per request in `logs/<name>/inference.jsonl`, written by a dedicated thread so
//! the request path only formats and enqueues. Bodies are logged only when the blueprint asks,
//! with credentials redacted.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use super::error::InferenceError;
use super::Shared;

/// The log line of one request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    pub time: String,
    pub id: String,
    pub endpoint: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    pub status: u16,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// The error code answered, when the gateway answered itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Backends tried before the one that answered, with why they were skipped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// What guards did (rewrites, redactions, denials).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub client_disconnected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
}

/// Size at which `inference.jsonl` moves to `inference.jsonl.1`.
pub const LOG_CAP: u64 = 64 << 20;

/// The log file, rotated by size; whole lines only.
struct Capped {
    path: PathBuf,
    w: BufWriter<File>,
    size: u64,
    cap: u64,
}

impl Capped {
    fn open(path: &Path, cap: u64) -> std::io::Result<Capped> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let size = f.metadata()?.len();
        Ok(Capped {
            path: path.to_path_buf(),
            w: BufWriter::with_capacity(64 << 10, f),
            size,
            cap,
        })
    }

    fn write(&mut self, line: &str) {
        if self.size > 0 && self.size + line.len() as u64 > self.cap {
            let _ = self.w.flush();
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            if std::fs::rename(&self.path, &old).is_ok() {
                if let Ok(f) = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&self.path)
                {
                    self.w = BufWriter::with_capacity(64 << 10, f);
                    self.size = 0;
                }
            }
        }
        if self.w.write_all(line.as_bytes()).is_ok() {
            self.size += line.len() as u64;
        }
    }

    fn flush(&mut self) {
        let _ = self.w.flush();
    }
}

/// Where log lines go.
pub struct LogSink {
    tx: Option<mpsc::Sender<String>>,
    path: Option<PathBuf>,
}

impl LogSink {
    pub fn none() -> LogSink {
        LogSink {
            tx: None,
            path: None,
        }
    }

    /// Appends to `dir/inference.jsonl` (created 0600, the directory 0700), moving it to
    /// `inference.jsonl.1` when it reaches [`LOG_CAP`] (as the supervisor caps its logs).
    pub fn open(dir: &Path) -> Result<LogSink, InferenceError> {
        LogSink::open_capped(dir, LOG_CAP)
    }

    pub fn open_capped(dir: &Path, cap: u64) -> Result<LogSink, InferenceError> {
        crate::home::create_dir_private(dir).map_err(InferenceError::Dir)?;
        let path = dir.join(crate::home::INFERENCE_LOG);
        let io_err = |source| InferenceError::Io {
            path: dir.join(crate::home::INFERENCE_LOG),
            source,
        };
        let mut file = Capped::open(&path, cap).map_err(io_err)?;
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("inference-log".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    file.write(&line);
                    while let Ok(more) = rx.try_recv() {
                        file.write(&more);
                    }
                    file.flush();
                }
                file.flush();
            })
            .map_err(io_err)?;
        Ok(LogSink {
            tx: Some(tx),
            path: Some(path),
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn write(&self, r: &Record) {
        if let Some(tx) = &self.tx {
            let mut line = serde_json::to_string(r).expect("a record serialises");
            line.push('\n');
            let _ = tx.send(line);
        }
    }
}

/// A request in flight: logged (and its tokens charged) when dropped, which for a stream is
/// when the body ends or the client goes away.
pub struct Pending {
    pub rec: Record,
    pub start: Instant,
    pub shared: Arc<Shared>,
    /// Whether a backend was reached (for the last-inference time).
    pub reached_backend: bool,
    armed: bool,
}

impl Pending {
    pub fn new(shared: Arc<Shared>, id: String, endpoint: &'static str) -> Pending {
        let rec = Record {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            id,
            endpoint,
            ..Record::default()
        };
        Pending {
            rec,
            start: Instant::now(),
            shared,
            reached_backend: false,
            armed: true,
        }
    }

    /// Moves the request into a new owner (a streaming body); `self` no longer logs.
    pub fn take(&mut self) -> Pending {
        self.armed = false;
        Pending {
            rec: std::mem::take(&mut self.rec),
            start: self.start,
            shared: self.shared.clone(),
            reached_backend: self.reached_backend,
            armed: true,
        }
    }

    pub fn mark_first_byte(&mut self) {
        if self.rec.ttft_ms.is_none() {
            self.rec.ttft_ms = Some(ms(self.start));
        }
    }
}

pub fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.rec.latency_ms = ms(self.start);
        if self.rec.status == 0 {
            // Dropped before an answer: the agent went away and hyper dropped the request
            // (and with it the upstream call). 499 as nginx logs it.
            self.rec.status = 499;
            self.rec.client_disconnected = true;
        }
        let tokens = self.rec.prompt_tokens.unwrap_or(0) + self.rec.completion_tokens.unwrap_or(0);
        // Charged to the limits in force now (a reload may have swapped them meanwhile).
        self.shared.charge(tokens);
        if self.reached_backend {
            self.shared.touch();
        }
        self.shared.log.write(&self.rec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_capped_and_keeps_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LogSink::open_capped(dir.path(), 1000).unwrap();
        for i in 0..50 {
            sink.write(&Record {
                id: format!("r{i}"),
                status: 200,
                ..Record::default()
            });
        }
        let path = sink.path().unwrap().to_path_buf();
        drop(sink); // the writer thread drains and exits
        std::thread::sleep(std::time::Duration::from_millis(200));
        let cur = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(dir.path().join("inference.jsonl.1")).unwrap();
        assert!(
            cur.len() <= 1000 && old.len() <= 1000,
            "{} {}",
            cur.len(),
            old.len()
        );
        for l in cur.lines().chain(old.lines()) {
            serde_json::from_str::<serde_json::Value>(l).expect("whole JSON lines");
        }
        assert!(cur.contains("\"r49\""));
    }
}
