//! End to end with the real sandbox runtime: `SandboxGateway` as the spawn hook, an agent
//! (curl, unprivileged, in its own user namespace) reaching the test hosts only through the
//! gateway, and a hot reload while the sandbox keeps running. Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

mod network_support;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use nemoclaw::gateway::egress::{SandboxGateway, StaticResolver};
use nemoclaw::sandbox::spawn::HookError;
use nemoclaw::sandbox::spec::{self, HostView, IdRange, SpecInput};
use nemoclaw::sandbox::{spawn, NetnsHandle, NetworkSetup, SpawnOptions, Stdio};
use network_support::{test_names, Spec, World};

fn blueprint(dir: &Path) -> nemoclaw::blueprint::Blueprint {
    let p = dir.join("netagent.yaml");
    std::fs::write(
        &p,
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: netagent\n  version: 1\nagent:\n  command: /bin/sh\n",
    )
    .unwrap();
    nemoclaw::blueprint::set::load_one(&p)
        .expect("test blueprint")
        .blueprint
}

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    let _ = std::fs::File::from(fd).read_to_string(&mut s);
    s
}

/// The gateway as the spawn hook, the way the supervisor plugs it in.
struct Hook<'a>(&'a mut SandboxGateway);

impl NetworkSetup for Hook<'_> {
    fn setup(&mut self, ns: &NetnsHandle<'_>) -> Result<(), HookError> {
        Ok(self.0.attach(ns.netns)?)
    }
}

/// A started agent: wait for it with [`Agent::finish`].
struct Agent {
    sandbox: spawn::Sandbox,
    out: OwnedFd,
    err: OwnedFd,
}

impl Agent {
    /// Waits for the agent; returns (exit code, stdout, stderr).
    fn finish(mut self) -> (i32, String, String) {
        let err = self.err;
        let err = std::thread::spawn(move || read_all(err));
        let out = read_all(self.out);
        let status = self.sandbox.wait().unwrap();
        let _ = self.sandbox.teardown();
        (status.code(), out, err.join().unwrap())
    }
}

/// Starts `script` as the agent of a real sandbox wired to `gw`.
fn start_agent(w: &World, gw: &mut SandboxGateway, script: &str) -> Agent {
    let bp = blueprint(w.dir.path());
    let state = w.dir.path().join("state");
    let root = w.dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_nemoclaw"));
    let host = HostView::probe(Path::new("/"));
    let mut sb_spec = spec::build(&SpecInput {
        blueprint: &bp,
        state_dir: &state,
        nemoclaw_exe: exe,
        root_dir: &root,
        user_home: None,
        ids: IdRange::nth(900 + (std::process::id() % 50)),
        host: &host,
        command: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
        secrets: BTreeMap::new(),
        agent: None,
    })
    .expect("sandbox spec");
    sb_spec.env.extend(gw.agent_env());
    nemoclaw::sandbox::instance::check_host(&sb_spec).unwrap();
    spawn::prepare_host(&sb_spec).unwrap();
    std::fs::copy(&w.ca_path, state.join("ca.pem")).unwrap();
    let (out_r, out_w) = spawn::output_pipe().unwrap();
    let (err_r, err_w) = spawn::output_pipe().unwrap();
    let stdio = Stdio {
        stdin: spawn::dev_null().unwrap(),
        stdout: out_w,
        stderr: err_w,
    };
    let opts = SpawnOptions {
        cgroups: false,
        seccomp: true,
    };
    let sandbox =
        spawn::spawn(&sb_spec, &opts, stdio, &mut Hook(gw)).expect("spawning the sandbox");
    Agent {
        sandbox,
        out: out_r,
        err: err_r,
    }
}

#[test]
fn agent_in_a_real_sandbox_goes_out_only_through_the_gateway() {
    // World provides the test hosts and puts this thread in the gateway's namespace, so the
    // SandboxGateway's runtime dials upstream from there.
    let w = World::new(Spec::default());
    let resolver = Arc::new(StaticResolver::new(test_names()));
    let logs = w.dir.path().join("logs/netagent");
    let mut gw =
        SandboxGateway::new("netagent", Spec::default().policy(), &logs, resolver, false).unwrap();
    let ca = "/workspace/state/ca.pem";
    let script = format!(
        "set -u
curl -sS --max-time 5 --cacert {ca} https://api.test.example/proxied
curl -sS --max-time 5 --cacert {ca} --noproxy '*' https://api.test.example/direct
curl -s --max-time 5 -o /dev/null -w 'other=%{{http_code}}\\n' http://other.example/
curl -s --max-time 5 --noproxy '*' https://198.18.0.2/ >/dev/null 2>&1; echo ip=$?
"
    );
    let (code, out, err) = start_agent(&w, &mut gw, &script).finish();
    assert_eq!(code, 0, "agent failed\nstdout: {out}\nstderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "hello from api.test.example /proxied",
        "{out}\n{err}"
    );
    assert_eq!(
        lines[1], "hello from api.test.example /direct",
        "{out}\n{err}"
    );
    assert_eq!(lines[2], "other=403", "{out}\n{err}");
    assert_ne!(
        lines[3], "ip=0",
        "a direct IP connection got through: {out}"
    );
    let log = std::fs::read_to_string(logs.join("egress.jsonl")).unwrap();
    assert!(log.lines().count() >= 4, "{log}");

    // Hot reload while the agent runs: it asks, waits for the go-ahead, asks again.
    let script = "curl -s --max-time 5 -o /dev/null -w '%{http_code}\\n' http://other.example/
for i in $(seq 200); do [ -e /workspace/state/go ] && break; sleep 0.05; done
curl -s --max-time 5 -o /dev/null -w '%{http_code}\\n' http://other.example/";
    // Reload only once the first request has been decided (its line is in the log).
    let denials = || {
        std::fs::read_to_string(logs.join("egress.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"other.example\"") && l.contains("\"deny\""))
            .count()
    };
    let before = denials();
    let agent = start_agent(&w, &mut gw, script);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while denials() == before && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut spec = Spec::default();
    spec.domains.push("other.example".into());
    gw.reload(spec.policy()).unwrap();
    std::fs::write(w.dir.path().join("state/go"), "").unwrap();
    let (code, out, err) = agent.finish();
    assert_eq!((code, out.as_str()), (0, "403\n200\n"), "{err}");
}
