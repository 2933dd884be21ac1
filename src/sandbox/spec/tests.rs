use super::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::blueprint::types::Blueprint;
use crate::policy::inference::PLACEHOLDER_KEY;
use crate::sandbox::cgroups::CgroupLimits;

fn bp(yaml: &str) -> Blueprint {
    let head =
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: t1\n  version: 1\n";
    // Typed parse only: the spec's own checks must hold even for blueprints that skipped
    // semantic validation (defence in depth).
    crate::blueprint::load::parse_str(&format!("{head}{yaml}"))
        .map_err(|d| format!("{d:?}"))
        .unwrap()
}

fn host() -> HostView {
    HostView {
        system: vec![
            ("usr".into(), HostEntry::Dir),
            ("bin".into(), HostEntry::Symlink("usr/bin".into())),
            ("lib".into(), HostEntry::Symlink("usr/lib".into())),
            ("lib64".into(), HostEntry::Symlink("usr/lib64".into())),
            ("sbin".into(), HostEntry::Symlink("usr/sbin".into())),
        ],
        ssl_certs: Some("/etc/ssl/certs".into()),
        alternatives: None,
    }
}

fn spec_of(b: &Blueprint, command: Option<Vec<String>>) -> Result<SandboxSpec, SpecError> {
    let h = host();
    build(&SpecInput {
        blueprint: b,
        state_dir: Path::new("/h/state/t1"),
        nemoclaw_exe: Path::new("/usr/local/bin/nemoclaw"),
        root_dir: Path::new("/h/run/.root"),
        user_home: Some(Path::new("/home/u")),
        ids: IdRange::nth(3),
        host: &h,
        command,
        secrets: BTreeMap::from([("BOT_TOKEN".to_string(), "s3cret".to_string())]),
        agent: None,
    })
}

fn cmd(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

#[test]
fn ids_are_per_sandbox_and_above_2_20() {
    let r = IdRange::nth(3);
    assert_eq!(r.host_base, (1 << 20) + 3 * 65536);
    assert_eq!(r.map_line(), format!("0 {} 65536\n", (1 << 20) + 3 * 65536));
    let s = spec_of(&bp("agent:\n  command: /bin/sh\n"), None).unwrap();
    assert_eq!(s.uid, 1000);
    assert_eq!(s.host_uid(), (1 << 20) + 3 * 65536 + 1000);
    assert_eq!(s.host_gid(), s.host_uid());
}

#[test]
fn environment_is_built_from_scratch() {
    std::env::set_var("NEMOCLAW_SPEC_TEST_LEAK", "host-value");
    let s = spec_of(
        &bp("agent:\n  command: /bin/sh\n  env:\n    FOO: bar\n"),
        None,
    )
    .unwrap();
    assert!(!s.env.contains_key("NEMOCLAW_SPEC_TEST_LEAK"));
    assert_eq!(s.env["FOO"], "bar");
    assert_eq!(s.env["HOME"], STATE_PATH);
    assert_eq!(s.env["PATH"], SANDBOX_PATH);
    assert_eq!(s.env["NEMOCLAW_SANDBOX"], "t1");
    assert_eq!(s.env["BOT_TOKEN"], "s3cret");
    assert!(
        !s.env.contains_key("OPENAI_BASE_URL"),
        "no inference configured"
    );
    let keys: Vec<_> = s.env.keys().cloned().collect();
    let host_only: Vec<_> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| !keys.contains(k))
        .collect();
    assert!(!host_only.is_empty());
}

#[test]
fn filesystem_layout() {
    let s = spec_of(
        &bp("agent:\n  command: /bin/sh\nfilesystem:\n  mounts:\n    - {host: ~/data, path: /data}\n    - {host: /srv/out, path: /out, readOnly: false}\n"),
        None,
    )
    .unwrap();
    let target = |t: &str| {
        s.mounts
            .iter()
            .find(|m| m.target == t)
            .unwrap_or_else(|| panic!("{t} missing"))
            .kind
            .clone()
    };
    assert_eq!(
        target("/usr"),
        MountKind::Bind {
            source: "/usr".into(),
            read_only: true,
            file: false
        }
    );
    assert!(s
        .symlinks
        .contains(&("/bin".to_string(), "usr/bin".to_string())));
    assert_eq!(
        target(STATE_PATH),
        MountKind::Bind {
            source: "/h/state/t1".into(),
            read_only: false,
            file: false
        }
    );
    assert_eq!(
        target(NEMOCLAW_BIN),
        MountKind::Bind {
            source: "/usr/local/bin/nemoclaw".into(),
            read_only: true,
            file: true
        }
    );
    assert_eq!(
        target("/data"),
        MountKind::Bind {
            source: "/home/u/data".into(),
            read_only: true,
            file: false
        },
        "read-only by default"
    );
    assert_eq!(
        target("/out"),
        MountKind::Bind {
            source: "/srv/out".into(),
            read_only: false,
            file: false
        }
    );
    assert_eq!(
        target("/tmp"),
        MountKind::Tmpfs {
            size: 64 << 20,
            mode: 0o1777
        }
    );
    assert_eq!(target("/proc"), MountKind::Proc);
    assert_eq!(target("/dev/pts"), MountKind::Devpts);
    assert_eq!(
        target("/etc/ssl/certs"),
        MountKind::Bind {
            source: "/etc/ssl/certs".into(),
            read_only: true,
            file: false
        }
    );
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        assert!(matches!(
            target(&format!("/dev/{node}")),
            MountKind::Bind {
                file: true,
                read_only: false,
                ..
            }
        ));
    }
    // Only read-only binds, the state dir, device nodes and declared rw mounts are writable.
    let writable: Vec<_> = s
        .mounts
        .iter()
        .filter(|m| {
            matches!(
                m.kind,
                MountKind::Bind {
                    read_only: false,
                    file: false,
                    ..
                }
            )
        })
        .map(|m| m.target.as_str())
        .collect();
    assert_eq!(writable, vec![STATE_PATH, "/out"]);
    // The dev tmpfs comes before the nodes bound into it.
    let dev = s.mounts.iter().position(|m| m.target == "/dev").unwrap();
    let null = s
        .mounts
        .iter()
        .position(|m| m.target == "/dev/null")
        .unwrap();
    assert!(dev < null);
}

#[test]
fn etc_is_generated() {
    let s = spec_of(&bp("agent:\n  command: /bin/sh\n"), None).unwrap();
    let file = |p: &str| {
        s.files
            .iter()
            .find(|f| f.path == p)
            .unwrap()
            .contents
            .clone()
    };
    assert!(file("/etc/hosts").contains("127.0.0.1\tlocalhost inference.local"));
    assert_eq!(
        file("/etc/resolv.conf").lines().next(),
        Some("nameserver 127.0.0.1")
    );
    assert!(file("/etc/passwd").contains("agent:x:1000:1000:"));
    assert!(!file("/etc/passwd").contains("$"), "no password hashes");
    assert!(file("/etc/group").contains("agent:x:1000:"));
    assert!(file("/etc/nsswitch.conf").contains("hosts: files dns"));
}

#[test]
fn limits_and_rlimits() {
    let s = spec_of(
        &bp("agent:\n  command: /bin/sh\nresources:\n  cpu: 0.5\n  memory: 256Mi\n  pids: 64\nsandbox:\n  nofile: 1024\n  tmpSize: 8Mi\n"),
        None,
    )
    .unwrap();
    assert_eq!(
        s.cgroup,
        CgroupLimits {
            cpu_millis: Some(500),
            memory: Some(256 << 20),
            pids: 64
        }
    );
    assert_eq!(
        s.rlimits,
        Rlimits {
            core: 0,
            nofile: 1024
        }
    );
    assert!(s.mounts.iter().any(|m| m.target == "/tmp"
        && m.kind
            == MountKind::Tmpfs {
                size: 8 << 20,
                mode: 0o1777
            }));
    let d = spec_of(&bp("agent:\n  command: /bin/sh\n"), None).unwrap();
    assert_eq!(d.cgroup.pids, 512);
    assert_eq!(d.rlimits.nofile, 4096);
}

#[test]
fn bad_input_names_the_field() {
    let e = spec_of(
        &bp("agent:\n  command: /bin/sh\nresources:\n  memory: 1Mi\n"),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("resources.memory:"), "{e}");
    let e = spec_of(
        &bp(
            "agent:\n  command: /bin/sh\nfilesystem:\n  mounts:\n    - {host: /x, path: /proc/x}\n",
        ),
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("filesystem.mounts[0].path:"),
        "{e}"
    );
    let e = spec_of(&bp("agent:\n  command: /bin/sh\nfilesystem:\n  mounts:\n    - {host: /x, path: /usr/share/x}\n"), None).unwrap_err();
    assert!(
        e.to_string().starts_with("filesystem.mounts[0].path:"),
        "{e}"
    );
    let e = spec_of(
        &bp("agent:\n  command: /bin/sh\nfilesystem:\n  mounts:\n    - {host: rel/x, path: /x}\n"),
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("filesystem.mounts[0].host:"),
        "{e}"
    );
    let e = spec_of(
        &bp("agent:\n  command: /bin/sh\nsandbox:\n  seccomp:\n    deny: [nope]\n"),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("sandbox.seccomp.deny[0]:"), "{e}");
    let e = spec_of(&bp("agent:\n  type: command\n"), None).unwrap_err();
    assert!(e.to_string().starts_with("agent.command:"), "{e}");
    let e = spec_of(&bp("agent:\n  command: /bin/sh\n  workdir: ../x\n"), None).unwrap_err();
    assert!(e.to_string().starts_with("agent.workdir:"), "{e}");
}

#[test]
fn command_comes_from_run_or_the_agent() {
    let b = bp("agent:\n  command: /bin/sleep\n  args: ['10']\n");
    assert_eq!(spec_of(&b, None).unwrap().argv, vec!["/bin/sleep", "10"]);
    let s = spec_of(&b, cmd(&["echo", "hi"])).unwrap();
    assert_eq!(s.argv, vec!["echo", "hi"]);
    assert_eq!(s.command_origin, "command");
}

#[test]
fn a_plugin_gives_command_environment_path_and_a_read_only_install() {
    let launch = AgentLaunch {
        kind: "hermes".into(),
        argv: vec!["hermes".into(), "gateway".into(), "run".into()],
        env: BTreeMap::from([
            (
                "HERMES_HOME".to_string(),
                "/workspace/state/hermes".to_string(),
            ),
            ("MODE".to_string(), "plugin".to_string()),
        ]),
        path: vec![format!("{AGENT_DIR}/venv/bin")],
        install: Some(PathBuf::from("/h/cache/agents/hermes/0.19.0")),
        install_writable: false,
    };
    let b = bp("agent:\n  type: hermes\n  args: ['-v']\n  env:\n    MODE: blueprint\n");
    let h = host();
    let input = |agent, command| SpecInput {
        blueprint: &b,
        state_dir: Path::new("/h/state/t1"),
        nemoclaw_exe: Path::new("/usr/local/bin/nemoclaw"),
        root_dir: Path::new("/h/run/.root"),
        user_home: None,
        ids: IdRange::nth(3),
        host: &h,
        command,
        secrets: BTreeMap::new(),
        agent,
    };
    let s = build(&input(Some(&launch), None)).unwrap();
    assert_eq!(s.argv, vec!["hermes", "gateway", "run", "-v"]);
    assert_eq!(s.command_origin, "agent.type");
    assert_eq!(s.env["HERMES_HOME"], "/workspace/state/hermes");
    assert_eq!(s.env["MODE"], "blueprint", "agent.env wins over the plugin");
    assert_eq!(
        s.env["PATH"],
        format!("{AGENT_DIR}/venv/bin:{SANDBOX_PATH}")
    );
    let m = s.mounts.iter().find(|m| m.target == AGENT_DIR).unwrap();
    assert_eq!(
        m.kind,
        MountKind::Bind {
            source: "/h/cache/agents/hermes/0.19.0".into(),
            read_only: true,
            file: false
        }
    );
    let by_run = build(&input(Some(&launch), cmd(&["hermes", "-z", "hi"]))).unwrap();
    assert_eq!(by_run.argv, vec!["hermes", "-z", "hi"]);
    assert_eq!(
        by_run.env["PATH"], s.env["PATH"],
        "exec and run see the agent's PATH"
    );
    let no_command = AgentLaunch {
        argv: vec![],
        ..launch.clone()
    };
    let e = build(&input(Some(&no_command), None)).unwrap_err();
    assert!(
        e.to_string()
            .contains("agent type `hermes` needs a command"),
        "{e}"
    );
}

#[test]
fn command_resolution_follows_symlinks_path_and_binds() {
    let s = spec_of(&bp("agent:\n  command: /bin/sh\n"), cmd(&["true"])).unwrap();
    let found = s.resolve_command(|p| p == Path::new("/usr/bin/true"));
    assert_eq!(found, Some(PathBuf::from("/usr/bin/true")));
    let s = spec_of(&bp("agent:\n  command: /bin/sh\n"), cmd(&["/bin/sh"])).unwrap();
    assert_eq!(
        s.resolve_command(|p| p == Path::new("/usr/bin/sh")),
        Some(PathBuf::from("/usr/bin/sh"))
    );
    let s = spec_of(
        &bp("agent:\n  command: /bin/sh\n"),
        cmd(&["/workspace/state/run.sh"]),
    )
    .unwrap();
    assert_eq!(
        s.resolve_command(|_| true),
        Some(PathBuf::from("/h/state/t1/run.sh"))
    );
    let s = spec_of(&bp("agent:\n  command: /bin/sh\n"), cmd(&["/tmp/x"])).unwrap();
    assert_eq!(
        s.resolve_command(|_| true),
        None,
        "tmpfs paths do not exist before start"
    );
    let s = spec_of(
        &bp("agent:\n  command: /bin/sh\n"),
        cmd(&["nonexistent-cmd"]),
    )
    .unwrap();
    assert_eq!(s.resolve_command(|_| false), None);
}

#[test]
fn inference_gets_the_gateway_url_and_a_placeholder_key() {
    let s = spec_of(
        &bp("agent:\n  command: /bin/sh\ninference:\n  backends:\n    - {name: m, kind: mock}\n  allowedModels: [mock-1]\n"),
        None,
    )
    .unwrap();
    assert_eq!(s.env["OPENAI_BASE_URL"], "http://inference.local/v1");
    assert_eq!(s.env["OPENAI_API_KEY"], PLACEHOLDER_KEY);
    assert!(
        !s.env.contains_key("ANTHROPIC_BASE_URL"),
        "no anthropic backend, no anthropic variables"
    );
}

#[test]
fn an_anthropic_backend_gets_the_anthropic_variables_too() {
    let s = spec_of(
        &bp("agent:\n  command: /bin/sh\ninference:\n  backends:\n    - {name: a, kind: anthropic, apiKey: {env: ANTHROPIC_KEY}}\n  allowedModels: [claude-x]\n"),
        None,
    )
    .unwrap();
    assert_eq!(s.env["ANTHROPIC_BASE_URL"], "http://inference.local");
    assert_eq!(s.env["ANTHROPIC_API_KEY"], PLACEHOLDER_KEY);
    assert_eq!(s.env["OPENAI_BASE_URL"], "http://inference.local/v1");
}

#[test]
fn failed_checks_can_be_matched() {
    let mount = |path: &str, host: &str| {
        let yaml = format!(
            "agent:\n  command: /bin/sh\nfilesystem:\n  mounts:\n    - {{host: {host}, path: {path}}}\n"
        );
        spec_of(&bp(&yaml), None).unwrap_err()
    };
    let e = mount("/proc/x", "/x");
    assert_eq!(
        e,
        SpecError::Check {
            field: "filesystem.mounts[0].path".into(),
            reason: CheckError::Reserved {
                path: "/proc/x".into(),
                reserved: "/proc",
            },
        }
    );
    assert_eq!(
        e.to_string(),
        "filesystem.mounts[0].path: `/proc/x` is inside `/proc`, which the sandbox provides itself"
    );
    assert!(matches!(
        mount("/usr/share/x", "/x"),
        SpecError::Check {
            reason: CheckError::SystemDir { dir: "usr", .. },
            ..
        }
    ));
    assert!(matches!(
        mount("/x", "rel/x"),
        SpecError::Check {
            reason: CheckError::HostNotAbsolute(_),
            ..
        }
    ));
    let e = spec_of(&bp("agent:\n  command: /bin/sh\n  workdir: ../x\n"), None).unwrap_err();
    assert!(matches!(
        e,
        SpecError::Check {
            reason: CheckError::NotAbsolute(_),
            ..
        }
    ));
}
