//! The real clients: `nemoclaw gateway serve` (the binary) in front of a fake OpenAI-compatible
//! backend, called by the official `openai` Python package from PyPI (installed by
//! `.ci/setup-python.sh` into `.venv-tests/`).

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

mod inference_support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inference_support::*;
use serde_json::Value;

const REAL: &str = "py-real-key-CANARY-51d0e7";

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-tests/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run .ci/setup-python.sh (it installs the openai client these tests use)",
        p.display()
    );
    p
}

struct Served {
    child: Child,
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(home: &Path, blueprint: &Path, env: &[(&str, &str)]) -> Result<Served, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nemoclaw"));
    cmd.args(["gateway", "serve", "--blueprint"])
        .arg(blueprint)
        .args(["--listen", "127.0.0.1:0", "--threads", "2"])
        .env("NEMOCLAW_HOME", home)
        .env_remove("UP_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.is_empty() {
        let out = child.wait_with_output().unwrap();
        return Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: Value = serde_json::from_str(&line).unwrap();
    Ok(Served {
        child,
        addr: v["listening"].as_str().unwrap().to_string(),
    })
}

fn blueprint(dir: &Path, url: &str, models: &str, key: &str) -> PathBuf {
    let p = dir.join("bp.yaml");
    std::fs::write(
        &p,
        format!(
            "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: pytest\n  version: 1\nagent:\n  type: demo\ninference:\n  backends:\n    - name: up\n      kind: openai\n      url: {url}\n      apiKey: {key}\n  allowedModels: [{models}]\n  limits:\n    maxTokens: 128\n"
        ),
    )
    .unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_client_chats_streams_and_embeds_through_the_gateway() {
    let py = python();
    let up = fake(Mode::Ok, REAL).await;
    let home = tempfile::tempdir().unwrap();
    let creds_dir = home.path().join("credentials");
    std::fs::create_dir_all(&creds_dir).unwrap();
    let key_file = creds_dir.join("up");
    std::fs::write(&key_file, format!("{REAL}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bp = blueprint(home.path(), &up.url(), "m-1", "{file: up}");
    let gw = serve(home.path(), &bp, &[]).unwrap();

    let out = tokio::task::spawn_blocking({
        let base = format!("http://{}/v1", gw.addr);
        move || {
            Command::new(py)
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/openai_client.py"))
                .env("OPENAI_BASE_URL", base)
                .env(
                    "OPENAI_API_KEY",
                    nemoclaw::policy::inference::PLACEHOLDER_KEY,
                )
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["chat"], "echo: hello from python");
    assert_eq!(v["chat_usage"], 12);
    assert_eq!(v["stream"], "part0 part1 part2 ");
    assert_eq!(v["stream_chunks"], 3);
    assert_eq!(v["embedding"], serde_json::json!([0.1, 0.2, 0.3]));
    assert_eq!(v["forbidden"], 403);
    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|s| s.auth.as_deref() == Some(&format!("Bearer {REAL}"))),
        "the real key went upstream"
    );
    assert_eq!(seen[0].body["max_tokens"], 128);

    // SIGHUP re-reads the blueprint; SIGTERM stops cleanly.
    blueprint(home.path(), &up.url(), "m-2", "{file: up}");
    let pid = nix::unistd::Pid::from_raw(gw.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let addr: std::net::SocketAddr = gw.addr.parse().unwrap();
    let t = Instant::now();
    loop {
        let r = post(addr, "/v1/chat/completions", &chat("m-2", "after reload")).await;
        if r.status == 200 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "reload not applied: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut gw = gw;
    let status = gw.child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    let log = home.path().join("logs/pytest/inference.jsonl");
    let lines = std::fs::read_to_string(&log).unwrap();
    assert!(lines.lines().count() >= 5, "{lines}");
    for f in files_under(home.path()) {
        if f == key_file {
            continue;
        }
        let text = std::fs::read(&f).unwrap();
        assert!(
            !text.windows(REAL.len()).any(|w| w == REAL.as_bytes()),
            "{} contains the key",
            f.display()
        );
    }
}

#[test]
fn serve_refuses_to_start_without_its_key_and_names_it() {
    let home = tempfile::tempdir().unwrap();
    let bp = blueprint(home.path(), "http://127.0.0.1:9/v1", "m-1", "{env: UP_KEY}");
    let err = serve(home.path(), &bp, &[])
        .err()
        .expect("no key: no start");
    assert!(
        err.contains("exit Some(1)") && err.contains("UP_KEY"),
        "{err}"
    );
    let bp = blueprint(home.path(), "http://127.0.0.1:9/v1", "m-1", "{file: loose}");
    std::fs::create_dir_all(home.path().join("credentials")).unwrap();
    let f = home.path().join("credentials/loose");
    std::fs::write(&f, "k").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = serve(home.path(), &bp, &[])
        .err()
        .expect("loose file: no start");
    assert!(err.contains("chmod 600"), "{err}");
}
