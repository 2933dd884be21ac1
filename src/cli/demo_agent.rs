//! `nemoclaw demo-agent` (hidden): the quickstart's agent. It needs nothing but this binary,
//! which every sandbox mounts read-only, so the quickstart runs on a bare host.
//!
//! Each tick it asks the model behind `$OPENAI_BASE_URL` (the gateway's `inference.local`) for
//! a reply, records it with a run counter in `<state>/demo-agent.json` (atomically), and prints
//! one JSON line. It speaks plain HTTP/1.1 over std's TcpStream: the gateway is local and plain.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::Exit;

#[derive(Debug, Clone, Args)]
pub struct DemoAgentArgs {
    /// Where the agent keeps its state.
    #[arg(long, env = "NEMOCLAW_STATE_DIR", default_value = "/workspace/state")]
    pub state_dir: PathBuf,
    /// Seconds between ticks.
    #[arg(long, default_value_t = 30)]
    pub interval: u64,
    /// Do one tick and exit.
    #[arg(long)]
    pub once: bool,
    /// The model to ask.
    #[arg(long, env = "NEMOCLAW_DEMO_MODEL", default_value = "mock-1")]
    pub model: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DemoState {
    runs: u64,
    #[serde(default)]
    last_reply: Option<String>,
    #[serde(default)]
    last_error: Option<String>,
}

pub fn run(a: DemoAgentArgs) -> anyhow::Result<Exit> {
    let file = a.state_dir.join("demo-agent.json");
    loop {
        let mut state: DemoState = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        state.runs += 1;
        match std::env::var("OPENAI_BASE_URL") {
            Ok(base) => match ask(&base, &a.model, state.runs) {
                Ok(reply) => {
                    state.last_reply = Some(reply);
                    state.last_error = None;
                }
                Err(e) => state.last_error = Some(format!("{e:#}")),
            },
            Err(_) => {
                state.last_error =
                    Some("OPENAI_BASE_URL is not set: no inference configured".into())
            }
        }
        let json = serde_json::to_vec_pretty(&state)?;
        crate::home::write_atomic(&file, &json, 0o644)
            .with_context(|| format!("cannot write {}", file.display()))?;
        println!(
            "{}",
            serde_json::json!({"agent": "demo", "run": state.runs, "reply": state.last_reply, "error": state.last_error})
        );
        if a.once {
            return Ok(if state.last_error.is_some() {
                Exit::Failure
            } else {
                Exit::Ok
            });
        }
        std::thread::sleep(Duration::from_secs(a.interval.max(1)));
    }
}

/// One chat completion over plain HTTP/1.1.
fn ask(base: &str, model: &str, run: u64) -> anyhow::Result<String> {
    let rest = base
        .strip_prefix("http://")
        .context("OPENAI_BASE_URL must be http:// (the gateway is local)")?;
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
    let mut s = TcpStream::connect(&addr).with_context(|| format!("cannot connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        bail!(
            "inference answered {status}: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let v: serde_json::Value =
        serde_json::from_str(&body).context("inference reply is not JSON")?;
    v["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_string)
        .context("inference reply has no choices[0].message.content")
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
