//! Reading a sandbox's logs (`logs/<name>/`): the file of each kind, the time of a JSON line
//! (for `--since`), and a [`Tail`] that hands out the new whole lines of a file as it grows,
//! starting over when the file is truncated or rotated.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::home::{self, Home};

/// The logs of one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogKind {
    Agent,
    Inference,
    Egress,
    Supervisor,
    Upgrade,
}

impl LogKind {
    /// The file name under `logs/<name>/`.
    pub fn file(self) -> &'static str {
        match self {
            LogKind::Agent => home::AGENT_LOG,
            LogKind::Inference => home::INFERENCE_LOG,
            LogKind::Egress => home::EGRESS_LOG,
            LogKind::Supervisor => home::SUPERVISOR_LOG,
            LogKind::Upgrade => home::UPGRADE_LOG,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("no logs for `{name}` in {} (is it deployed? see `nemoclaw status`)", dir.display())]
    NoLogs { name: String, dir: PathBuf },
    #[error("{} does not exist yet", .0.display())]
    NotYet(PathBuf),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The time of a JSON log line, in seconds since the epoch: `ts` (seconds) or `time` /
/// `timestamp` (RFC 3339). `None` for a line that has neither (it is never filtered out).
pub fn line_time(line: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if let Some(t) = v.get("ts").and_then(|t| t.as_f64()) {
        return Some(t);
    }
    let s = v.get("time").or_else(|| v.get("timestamp"))?.as_str()?;
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
}

/// The epoch seconds `since` ago, for [`is_recent`] (`None`: no cut).
pub fn cutoff(since: Option<Duration>) -> Option<f64> {
    since.map(|s| {
        SystemTime::now()
            .checked_sub(s)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    })
}

/// Whether `line` is no older than `cutoff` (lines without a time always are).
pub fn is_recent(line: &str, cutoff: Option<f64>) -> bool {
    cutoff.is_none_or(|c| line_time(line).is_none_or(|t| t >= c))
}

/// A log file read from where the last read stopped.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    pos: u64,
    /// Hold back a last line that has no end yet (it is still being written).
    whole_lines_only: bool,
}

impl Tail {
    /// The `kind` log of sandbox `name`; `follow` holds back a partial last line.
    pub fn open(home: &Home, name: &str, kind: LogKind, follow: bool) -> Result<Tail, LogsError> {
        let dir = home.logs(name);
        if !dir.is_dir() {
            return Err(LogsError::NoLogs {
                name: name.to_string(),
                dir,
            });
        }
        Ok(Tail {
            path: dir.join(kind.file()),
            pos: 0,
            whole_lines_only: follow,
        })
    }

    /// The lines written since the last call; `Ok(None)` while the file does not exist.
    pub fn read_new(&mut self) -> Result<Option<Vec<String>>, LogsError> {
        let io = |source| LogsError::Io {
            path: self.path.clone(),
            source,
        };
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Ok(None);
        };
        if f.metadata().map_err(io)?.len() < self.pos {
            self.pos = 0; // truncated or rotated: start over
        }
        f.seek(SeekFrom::Start(self.pos)).map_err(io)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(io)?;
        let upto = if self.whole_lines_only {
            buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
        } else {
            buf.len()
        };
        self.pos += upto as u64;
        Ok(Some(
            String::from_utf8_lossy(&buf[..upto])
                .lines()
                .map(String::from)
                .collect(),
        ))
    }

    /// The file read.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_timed_by_ts_or_rfc3339() {
        assert_eq!(line_time(r#"{"ts": 12.5}"#), Some(12.5));
        assert_eq!(line_time(r#"{"time": "1970-01-01T00:01:00Z"}"#), Some(60.0));
        assert_eq!(line_time("plain text"), None);
        let minute_ago = cutoff(Some(Duration::from_secs(60)));
        assert!(is_recent("plain text", minute_ago));
        assert!(!is_recent(r#"{"ts": 1.0}"#, minute_ago));
        assert!(is_recent(r#"{"ts": 1.0}"#, cutoff(None)));
    }

    #[test]
    fn a_tail_hands_out_whole_new_lines_and_starts_over_after_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        std::fs::create_dir_all(home.logs("t")).unwrap();
        let mut t = Tail::open(&home, "t", LogKind::Agent, true).unwrap();
        assert_eq!(t.read_new().unwrap(), None);
        std::fs::write(t.path(), "one\ntw").unwrap();
        assert_eq!(t.read_new().unwrap(), Some(vec!["one".to_string()]));
        std::fs::write(t.path(), "one\ntwo\n").unwrap();
        assert_eq!(t.read_new().unwrap(), Some(vec!["two".to_string()]));
        std::fs::write(t.path(), "x\n").unwrap();
        assert_eq!(t.read_new().unwrap(), Some(vec!["x".to_string()]));
        assert!(matches!(
            Tail::open(&home, "other", LogKind::Agent, false),
            Err(LogsError::NoLogs { .. })
        ));
    }
}
