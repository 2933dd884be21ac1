//! The control socket protocol (`run/<name>/control.sock`): JSON lines, one request and one
//! response per line, a version handshake first. Documented in `docs/control-protocol.md`.

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. A client with another major version is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request line: `{"id": ..., "op": "...", ...}`. `id` is echoed back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub id: serde_json::Value,
    #[serde(flatten)]
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Must come first on every connection.
    Hello {
        version: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    Status,
    /// Stop the agent (SIGTERM, then SIGKILL after the stop timeout) and exit the supervisor.
    Stop {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// Re-read the lifecycle policy (restart, maxRestarts, crashWindow, stopTimeout) from the
    /// deployed blueprint without restarting the agent.
    ReloadPolicy,
    /// What `nemoclaw exec` needs to enter the sandbox (init pid, uid/gid, env, workdir).
    ExecInfo,
    /// Take a checkpoint of the running agent's state now (`nemoclaw checkpoint NAME`).
    Checkpoint,
}

/// The state of the agent as the supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Starting,
    Running,
    /// Waiting to restart after a crash.
    Backoff,
    Stopping,
    /// Exited and not restarted (policy).
    Exited,
    /// Gave up (too many crashes, disk cap, setup failure).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub name: String,
    pub state: State,
    /// The sandbox init's host pid while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub supervisor_pid: u32,
    /// Times the agent was started again after exiting.
    pub restarts: u32,
    /// Crashes inside the crash window.
    pub recent_crashes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The health check's verdict (`lifecycle.healthCheck`); absent without a check or before
    /// its first counted result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Average CPU use of the sandbox since the agent started, in percent of one core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// When the gateway last answered an inference request (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_inference: Option<u64>,
    /// Something the supervisor did that the user should know about, kept for its whole life
    /// (e.g. "restored checkpoint <id> after 5 crashes").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A checkpoint just taken (the answer to [`Request::Checkpoint`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// The snapshot's id (its directory in `snapshots/<name>/`).
    pub id: String,
    /// Regular files and their bytes in the state copy.
    pub files: u64,
    pub bytes: u64,
    /// How long the agent was frozen.
    pub frozen_ms: u64,
    /// Older checkpoints removed to keep `lifecycle.checkpoint.keep`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<String>,
}

/// What `exec` needs to join a running sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecInfo {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    pub workdir: String,
    pub env: Vec<(String, String)>,
    pub cgroup_dirs: Vec<std::path::PathBuf>,
    pub seccomp_deny: Vec<String>,
}

/// A response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub id: serde_json::Value,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointInfo>,
}

impl Response {
    pub fn ok(id: serde_json::Value) -> Response {
        Response {
            id,
            ok: true,
            error: None,
            version: None,
            server: None,
            status: None,
            exec: None,
            checkpoint: None,
        }
    }
    pub fn err(id: serde_json::Value, msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(msg.into()),
            ..Response::ok(id)
        }
    }
}

/// Parses one request line; the error is the response to send.
pub fn parse_request(line: &str) -> Result<Envelope, Box<Response>> {
    serde_json::from_str::<Envelope>(line).map_err(|e| {
        let id = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("id").cloned())
            .unwrap_or_default();
        Box::new(Response::err(id, format!("bad request: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let e = parse_request(r#"{"id":1,"op":"hello","version":1,"client":"cli"}"#).unwrap();
        assert_eq!(
            e.request,
            Request::Hello {
                version: 1,
                client: Some("cli".into())
            }
        );
        assert_eq!(e.id, serde_json::json!(1));
        assert_eq!(
            parse_request(r#"{"op":"status"}"#).unwrap().request,
            Request::Status
        );
        assert_eq!(
            parse_request(r#"{"op":"stop","timeout_ms":500}"#)
                .unwrap()
                .request,
            Request::Stop {
                timeout_ms: Some(500)
            }
        );
        assert_eq!(
            parse_request(r#"{"op":"reload_policy"}"#).unwrap().request,
            Request::ReloadPolicy
        );
        assert_eq!(
            parse_request(r#"{"op":"checkpoint"}"#).unwrap().request,
            Request::Checkpoint
        );
        let line = serde_json::to_string(&Envelope {
            id: serde_json::json!("a"),
            request: Request::Status,
        })
        .unwrap();
        assert_eq!(line, r#"{"id":"a","op":"status"}"#);
    }

    #[test]
    fn bad_requests_get_an_error_with_the_id() {
        let r = parse_request(r#"{"id":7,"op":"launch_missiles"}"#).unwrap_err();
        assert!(!r.ok);
        assert_eq!(r.id, serde_json::json!(7));
        assert!(r.error.unwrap().contains("bad request"));
        assert!(parse_request("not json").is_err());
    }

    #[test]
    fn status_serialises_kebab_case() {
        let s = Status {
            name: "a".into(),
            state: State::Backoff,
            pid: None,
            supervisor_pid: 1,
            restarts: 2,
            recent_crashes: 2,
            last_exit: Some(1),
            message: None,
            healthy: None,
            cpu_percent: None,
            last_inference: None,
            memory_bytes: None,
            note: None,
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["state"], "backoff");
        assert!(v.get("pid").is_none());
        assert!(v.get("note").is_none());
    }

    #[test]
    fn a_checkpoint_answer_round_trips() {
        let r = Response {
            checkpoint: Some(CheckpointInfo {
                id: "20261207T231653.123Z-v1-checkpoint".into(),
                files: 3,
                bytes: 4096,
                frozen_ms: 12,
                pruned: vec![],
            }),
            ..Response::ok(serde_json::json!(2))
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains("pruned"), "{line}");
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), r);
    }
}
