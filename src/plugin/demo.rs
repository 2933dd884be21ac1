//! The quickstart's agent (`nemoclaw demo-agent`, hidden). It needs nothing but the nemoclaw
//! binary, which every sandbox mounts read-only, so the quickstart runs on a bare host.
//!
//! Each tick it asks the model behind `$OPENAI_BASE_URL` (the gateway's `inference.local`) for
//! a reply, records it with a run counter in `<state>/demo-agent.json` (atomically), and prints
//! one JSON line. It speaks plain HTTP/1.1 over std's TcpStream: the gateway is local and plain.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::home::{write_atomic, HomeError};

/// How the demo agent runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the agent keeps its state.
    pub state_dir: PathBuf,
    /// Time between ticks.
    pub interval: Duration,
    /// Do one tick and stop.
    pub once: bool,
    /// The model to ask.
    pub model: String,
}

/// Why the demo agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: HomeError,
    },
}

/// Why one tick got no reply (recorded in the state file as `last_error`).
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("OPENAI_BASE_URL is not set: no inference configured")]
    NoBaseUrl,
    #[error("OPENAI_BASE_URL must be http:// (the gateway is local)")]
    NotHttp,
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("malformed HTTP response")]
    Malformed,
    #[error("inference answered {status}: {body}")]
    Status { status: String, body: String },
    #[error("inference reply is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("inference reply has no choices[0].message.content")]
    NoContent,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DemoState {
    runs: u64,
    #[serde(default)]
    last_reply: Option<String>,
    #[serde(default)]
    last_error: Option<String>,
}

/// Ticks until stopped (or once, with `once`); returns whether the last tick got a reply.
pub fn run(o: &DemoOptions) -> Result<bool, DemoError> {
    let file = o.state_dir.join("demo-agent.json");
    loop {
        let state = tick(&file, &o.model)?;
        if o.once {
            return Ok(state.last_error.is_none());
        }
        std::thread::sleep(o.interval.max(Duration::from_secs(1)));
    }
}

/// One run: ask, record in the state file, print one JSON line.
fn tick(file: &Path, model: &str) -> Result<DemoState, DemoError> {
    let mut state: DemoState = std::fs::read(file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    state.runs += 1;
    let reply = std::env::var("OPENAI_BASE_URL")
        .map_err(|_| AskError::NoBaseUrl)
        .and_then(|base| ask(&base, model, state.runs));
    match reply {
        Ok(reply) => {
            state.last_reply = Some(reply);
            state.last_error = None;
        }
        Err(e) => state.last_error = Some(crate::error_chain(&e)),
    }
    let json = serde_json::to_vec_pretty(&state).unwrap_or_default();
    write_atomic(file, &json, 0o644).map_err(|source| DemoError::Write {
        path: file.to_path_buf(),
        source,
    })?;
    println!(
        "{}",
        serde_json::json!({"agent": "demo", "run": state.runs, "reply": state.last_reply, "error": state.last_error})
    );
    Ok(state)
}

/// One chat completion over plain HTTP/1.1.
fn ask(base: &str, model: &str, run: u64) -> Result<String, AskError> {
    let rest = base.strip_prefix("http://").ok_or(AskError::NotHttp)?;
    let (authority, prefix) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let path = format!("/{}/chat/completions", prefix.trim_end_matches('/')).replace("//", "/");
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": format!("Demo agent run {run}: say hello.")}],
    })
    .to_string();
    let key = std::env::var("OPENAI_API_KEY").unwrap_or_default();
    let mut s = TcpStream::connect(&addr).map_err(|source| AskError::Connect {
        addr: addr.clone(),
        source,
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text.split_once("\r\n\r\n").ok_or(AskError::Malformed)?;
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        return Err(AskError::Status {
            status: status.to_string(),
            body: body.chars().take(300).collect(),
        });
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let v: serde_json::Value = serde_json::from_str(&body).map_err(AskError::NotJson)?;
    v["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_string)
        .ok_or(AskError::NoContent)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}
