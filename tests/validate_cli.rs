//! The CLI as a new user meets it: bad input of every kind, output formats, exit codes, the
//! home, `init`, `nemohermes`, completions and the commands still to come.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nemoclaw")
}

fn run(args: &[&str], home: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .env("NEMOCLAW_HOME", home)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const GOOD: &str = "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: NAME\n  version: 1\nagent:\n  type: command\n  command: /bin/sh\n";

fn good(name: &str) -> String {
    GOOD.replace("NAME", name)
}

#[test]
fn ten_megabyte_file_is_refused_fast() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.yaml");
    let mut text = good("huge");
    text.push_str("  # ");
    text.push_str(&"x".repeat(10 << 20));
    std::fs::write(&p, text).unwrap();
    let t = Instant::now();
    let o = run(&["validate", p.to_str().unwrap()], dir.path());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error[file.too-large]"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn yaml_bomb_is_refused_fast() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bomb.yaml");
    let mut text = good("bomb").replace(
        "  version: 1\n",
        "  version: 1\n  labels:\n    l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..=12 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        text = text.replace("agent:\n", &format!("    l{i}: &l{i} [{refs}]\nagent:\n"));
    }
    std::fs::write(&p, text).unwrap();
    let t = Instant::now();
    let o = run(&["validate", p.to_str().unwrap()], dir.path());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error[yaml.too-complex]"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn symlink_loop_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(dir.path().join("b.yaml"), dir.path().join("a.yaml")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("a.yaml"), dir.path().join("b.yaml")).unwrap();
    let o = run(&["validate", dir.path().to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("a.yaml: error[file.unreadable]: cannot read file: symbolic link loop"),
        "{err}"
    );
    assert!(err.contains("b.yaml: error[file.unreadable]"), "{err}");
}

#[test]
fn human_output_has_position_source_line_and_caret() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.yaml");
    std::fs::write(
        &p,
        good("a") + "network:\n  egress:\n    allowedDomain: [x.com]\n",
    )
    .unwrap();
    let o = run(&["validate", p.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let expected = format!(
        "{}:11:5: error[schema.unknown-field]: unknown field `allowedDomain`, expected one of allowedDomains, blockedPorts, presets, allowAddresses\n    |\n 11 |     allowedDomain: [x.com]\n    |     ^\n  = help: did you mean `allowedDomains`?\n",
        p.display()
    );
    assert!(
        err.starts_with(&expected),
        "got:\n{err}\nwanted:\n{expected}"
    );
    assert!(
        err.ends_with("1 file checked: 1 error, 0 warnings.\n"),
        "{err}"
    );
}

#[test]
fn github_format_annotates() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.yaml");
    std::fs::write(&p, good("a") + "resources:\n  memory: -1Gi\n").unwrap();
    let o = run(
        &["validate", "--format", "github", p.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let line = stdout(&o);
    assert!(
        line.starts_with(&format!(
            "::error file={},line=10,col=11,title=schema.invalid::size `-1Gi` is negative",
            p.display()
        )),
        "{line}"
    );
}

#[test]
fn secrets_are_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.yaml");
    let secret = "nvapi-Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5";
    std::fs::write(
        &p,
        good("a") + &format!("inference:\n  backends:\n    - name: nim\n      kind: openai\n      url: https://x.example.com/v1\n      apiKey: {secret}\n  allowedModels: [m]\n"),
    )
    .unwrap();
    for format in ["human", "json", "github"] {
        let o = run(
            &["validate", "--format", format, p.to_str().unwrap()],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(1));
        let all = stdout(&o) + &stderr(&o);
        assert!(all.contains("secret.inline"), "{all}");
        assert!(
            !all.contains(secret),
            "{format} output leaked the secret: {all}"
        );
    }
}

#[test]
fn duplicate_names_across_files_name_both() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("one.yaml"), good("same")).unwrap();
    std::fs::write(dir.path().join("two.yaml"), good("same")).unwrap();
    let o = run(&["validate", dir.path().to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("two.yaml:4:9: error[name.duplicate]: name `same` is already used by"),
        "{err}"
    );
    assert!(err.contains("one.yaml"), "{err}");
}

#[test]
fn other_kinds_and_subdirectories_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), good("a")).unwrap();
    std::fs::write(
        dir.path().join("deploy.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("ci")).unwrap();
    std::fs::write(dir.path().join("ci/broken.yaml"), "{{{").unwrap();
    let o = run(&["validate", dir.path().to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "1 file checked: 1 blueprint valid.\n");
}

#[test]
fn source_config_defaults_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), good("a")).unwrap();
    std::fs::write(
        dir.path().join("nemoclaw.yaml"),
        "prune: true\ndefaults:\n  resources:\n    memory: 1Mi\n",
    )
    .unwrap();
    // The default is applied to the blueprint, then validated: 1Mi is too small.
    let o = run(&["validate", dir.path().to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error[resources.memory]"),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        dir.path().join("nemoclaw.yaml"),
        "prune: true\npurne: false\n",
    )
    .unwrap();
    let o = run(&["validate", dir.path().to_str().unwrap()], dir.path());
    assert!(
        stderr(&o).contains("nemoclaw.yaml:2:1: error[schema.unknown-field]"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_64_never_2() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["validate", "--formt", "json"], dir.path());
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    let o = run(&["no-such-command"], dir.path());
    assert_eq!(o.status.code(), Some(64));
    // No path and no home blueprints dir: a usage error that says what to do.
    let o = run(&["validate"], &dir.path().join("nohome"));
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("nemoclaw init"), "{}", stderr(&o));
    assert_eq!(
        stderr(&o).lines().count(),
        1,
        "errors are one line: {}",
        stderr(&o)
    );
}

#[test]
fn every_architecture_command_is_listed_and_pending_ones_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let help = stdout(&run(&["--help"], dir.path()));
    for cmd in [
        "init",
        "validate",
        "plan",
        "apply",
        "watch",
        "start",
        "stop",
        "restart",
        "destroy",
        "status",
        "logs",
        "exec",
        "run",
        "schema",
        "export",
        "completions",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "--help lacks {cmd}:\n{help}"
        );
    }
    assert!(!help.contains("demo-agent"), "hidden helpers stay hidden");
    let o = run(&["export", "--anything"], dir.path());
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("not implemented in this release yet"),
        "{}",
        stderr(&o)
    );
    let v = run(&["--version"], dir.path());
    assert_eq!(
        stdout(&v),
        format!("nemoclaw {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let o = run(&["completions", shell], dir.path());
        assert!(o.status.success(), "{shell}");
        assert!(stdout(&o).contains("validate"), "{shell}");
    }
}

#[test]
fn init_creates_a_private_home_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let o = run(&["init"], &home);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::metadata(&home).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for sub in [
        "blueprints",
        "credentials",
        "state",
        "logs",
        "run",
        "cache",
        "plugins",
        "snapshots",
    ] {
        assert!(home.join(sub).is_dir(), "{sub}");
    }
    let example = home.join("blueprints/quickstart.yaml");
    let before = std::fs::read_to_string(&example).unwrap();
    assert!(before.contains("$schema=../blueprint.schema.json"));
    assert!(home.join("blueprint.schema.json").is_file());
    // The example it wrote is valid (default path: the home's blueprints/).
    let o = run(&["validate"], &home);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A second init changes nothing and says so.
    std::fs::write(&example, "# edited\n").unwrap();
    let o = run(&["init"], &home);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&example).unwrap(), "# edited\n");
}

#[test]
fn the_default_agent_is_openclaw_nemoclaw_agent_or_hermes_for_nemohermes() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("nemohermes");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(
        src.join("h.yaml"),
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: h\n  version: 1\n",
    )
    .unwrap();
    // The plan shows the type the blueprint gets (the loader writes it in).
    let planned_type = |exe: &Path, agent: Option<&str>| {
        let mut c = Command::new(exe);
        c.args(["plan", "--dir", src.to_str().unwrap()])
            .env("NEMOCLAW_HOME", dir.path().join("home"))
            .env_remove("NEMOCLAW_AGENT");
        if let Some(a) = agent {
            c.env("NEMOCLAW_AGENT", a);
        }
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        out.lines()
            .find_map(|l| l.trim().strip_prefix("+  type: ").map(str::to_string))
            .unwrap_or_else(|| panic!("no agent type in the plan:\n{out}"))
    };
    assert_eq!(planned_type(Path::new(bin()), None), "openclaw");
    assert_eq!(planned_type(Path::new(bin()), Some("hermes")), "hermes");
    assert_eq!(planned_type(&link, None), "hermes");
    // A default that names no plugin is an error like any unknown type.
    let o = Command::new(bin())
        .args(["validate", src.to_str().unwrap()])
        .env("NEMOCLAW_HOME", dir.path())
        .env("NEMOCLAW_AGENT", "nosuchagent")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown agent type `nosuchagent`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn plugin_and_preset_from_the_source_are_known() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("plugins/myagent")).unwrap();
    std::fs::write(
        d.join("plugins/myagent/plugin.yaml"),
        "apiVersion: nemoclaw.dev/v1\nkind: Plugin\nmetadata:\n  name: myagent\nstart: {}\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("presets")).unwrap();
    std::fs::write(
        d.join("presets/internal.yaml"),
        "domains: [wiki.example.com]\n",
    )
    .unwrap();
    let bp = "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: p\n  version: 1\nagent:\n  type: myagent\nnetwork:\n  egress:\n    presets: [internal, github]\n";
    std::fs::write(d.join("p.yaml"), bp).unwrap();
    let o = run(&["validate", d.to_str().unwrap()], d);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// A path that does not exist is reported, and the rest are still checked.
#[test]
fn missing_path_is_reported_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let good_file = dir.path().join("g.yaml");
    std::fs::write(&good_file, good("g")).unwrap();
    let missing = PathBuf::from("/nonexistent/blueprint.yaml");
    let o = run(
        &[
            "validate",
            "--json",
            missing.to_str().unwrap(),
            good_file.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["blueprints"][0]["name"], "g");
    assert_eq!(v["diagnostics"][0]["code"], "file.unreadable");
}
