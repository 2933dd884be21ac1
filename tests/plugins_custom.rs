#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "tests"
)]
//! A user's own agent plugin, from a source's `plugins/` directory, with no change to
//! nemoclaw: its setup runs once in a setup sandbox and is cached, its files are rendered into
//! the state, its command runs with its PATH, its HTTP health check gates the start and shows
//! in `status`, and bad versions and missing network fail before anything changes.

mod sandbox_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sandbox_support::*;

/// A shell-script agent: setup writes the script into the install dir (and counts its runs in
/// a file beside the source, which the setup sandbox cannot see, so it counts through the
/// install tree instead), start serves HTTP with python's http.server.
const PLUGIN: &str = r#"apiVersion: nemoclaw.dev/v1
kind: Plugin
metadata:
  name: shellagent
  description: a shell-script agent for the tests
package:
  name: shellagent
  registry: npm
  defaultVersion: "1.0.0"
setup:
  egress: []
  script: |
    if [ "$AGENT_VERSION" != 1.0.0 ]; then
      echo "npm error notarget No matching version found for $AGENT_PACKAGE@$AGENT_VERSION." >&2
      exit 1
    fi
    mkdir -p "$AGENT_DIR/bin"
    cat > "$AGENT_DIR/bin/shellagent" <<'SH'
    #!/bin/sh
    echo "started $(cat "$SHELLAGENT_CONF")" >> /workspace/state/shellagent/starts.log
    cd /workspace/state/shellagent
    exec python3 -m http.server "$PORT" --bind 127.0.0.1
    SH
    chmod 755 "$AGENT_DIR/bin/shellagent"
    echo "installed by setup at $(date +%s%N)" > "$AGENT_DIR/installed"
    echo "setup done for $AGENT_PACKAGE@$AGENT_VERSION"
  creates: bin/shellagent
start:
  command: [shellagent]
  path: [bin]
  env:
    PORT: "{{ ports[0] }}"
    SHELLAGENT_CONF: /workspace/state/shellagent/agent.conf
  files:
    - path: shellagent/agent.conf
      template: agent.conf.j2
stop:
  signal: SIGTERM
  timeout: 5s
healthCheck:
  http: {port: 8181, path: /}
  interval: 1s
  timeout: 1s
  retries: 2
state: [shellagent]
ports: [8181]
"#;

const CONF: &str = "sandbox={{ sandbox.name }} model={{ inference.defaultModel }}\n";

/// A source dir with the plugin and one blueprint using it.
fn source(lab: &Lab, name: &str, version: &str) -> PathBuf {
    let src = lab.dir.path().join("src");
    let plugin = src.join("plugins/shellagent");
    std::fs::create_dir_all(&plugin).unwrap();
    std::fs::write(plugin.join("plugin.yaml"), PLUGIN).unwrap();
    std::fs::write(plugin.join("agent.conf.j2"), CONF).unwrap();
    let bp = format!(
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: 1\n\
         agent:\n  type: shellagent\n  version: \"{version}\"\n\
         inference:\n  backends:\n    - name: mock\n      kind: mock\n  allowedModels: [mock-1]\n\
         resources:\n  memory: 256Mi\n"
    );
    std::fs::write(src.join(format!("{name}.yaml")), bp).unwrap();
    src
}

fn apply(lab: &Lab, src: &Path, extra: &[&str]) -> Out {
    let dir = src.to_str().unwrap();
    let mut args = vec!["apply", "--dir", dir, "--auto-approve", "--wait", "30s"];
    args.extend_from_slice(extra);
    nc(lab, &args)
}

fn installed_marker(lab: &Lab) -> PathBuf {
    lab.home.join("cache/agents/shellagent/1.0.0/installed")
}

#[test]
fn a_plugin_from_the_source_is_installed_once_rendered_started_and_health_checked() {
    let lab = Lab::new();
    let name = format!("nctest-shell-{}", std::process::id());
    let _destroy = Destroy(&lab, &name);
    let src = source(&lab, &name, "1.0.0");
    let first = apply(&lab, &src, &[]);
    first.ok();
    assert!(first.has("Installing shellagent 1.0.0"), "{}", first.stderr);
    assert!(
        first.has("setup done for shellagent@1.0.0"),
        "{}",
        first.stderr
    );
    let marker = std::fs::read_to_string(installed_marker(&lab)).unwrap();

    // Rendered from the plugin's template, owned by the agent, read by the agent at start.
    let conf = lab.state(&name).join("shellagent/agent.conf");
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        format!("sandbox={name} model=mock-1\n")
    );
    wait_for("the agent's first start", Duration::from_secs(20), || {
        std::fs::read_to_string(lab.state(&name).join("shellagent/starts.log"))
            .is_ok_and(|s| s.contains(&format!("started sandbox={name}")))
    });
    wait_for("health: healthy in status", Duration::from_secs(20), || {
        let out = nc(&lab, &["status", "--json"]);
        out.stdout.contains("\"health\": \"healthy\"")
            || out.stdout.contains("\"health\":\"healthy\"")
    });
    // The agent's PATH has the plugin's bin dir: exec finds the plugin's executable by name.
    let which = nc(
        &lab,
        &[
            "exec",
            &name,
            "--",
            "/bin/sh",
            "-c",
            "command -v shellagent",
        ],
    );
    which.ok();
    assert_eq!(which.stdout.trim(), "/opt/nemoclaw/agent/bin/shellagent");
    // The install is read-only inside the sandbox.
    let w = nc(
        &lab,
        &[
            "exec",
            &name,
            "--",
            "/bin/sh",
            "-c",
            "touch /opt/nemoclaw/agent/x",
        ],
    );
    w.failed();

    // An inference change is a hot reload: the agent keeps running, its config follows.
    let bp = src.join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&bp).unwrap();
    std::fs::write(&bp, text.replace("[mock-1]", "[mock-2, mock-1]")).unwrap();
    let reload = apply(&lab, &src, &[]);
    reload.ok();
    assert!(reload.has(&format!("~ update {name}")), "{}", reload.stdout);
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        format!("sandbox={name} model=mock-2\n")
    );

    // A change to the plugin's files replaces the sandbox (same install: setup is unchanged).
    let template = src.join("plugins/shellagent/agent.conf.j2");
    std::fs::write(&template, format!("v2 {CONF}")).unwrap();
    let plan = nc(&lab, &["plan", "--dir", src.to_str().unwrap()]);
    assert!(plan.has("plugin `shellagent` changed"), "{}", plan.stdout);
    apply(&lab, &src, &[]).ok();
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        format!("v2 sandbox={name} model=mock-2\n")
    );

    // A second apply that starts the agent again installs nothing.
    let again = apply(&lab, &src, &["--replace", &name]);
    again.ok();
    assert!(!again.has("Installing"), "{}", again.stderr);
    assert_eq!(
        std::fs::read_to_string(installed_marker(&lab)).unwrap(),
        marker
    );
    nc(&lab, &["destroy", &name]).ok();
}

#[test]
fn a_version_that_does_not_exist_fails_before_anything_changes() {
    let lab = Lab::new();
    let name = format!("nctest-shellv-{}", std::process::id());
    let src = source(&lab, &name, "9.9.9");
    let plan = nc(&lab, &["plan", "--dir", src.to_str().unwrap()]);
    plan.ok();
    assert!(
        plan.has("installs shellagent 9.9.9 (npm package `shellagent`) first"),
        "{}",
        plan.stdout
    );
    let out = apply(&lab, &src, &[]);
    out.failed();
    assert!(out.has("nothing was changed"), "{}", out.stderr);
    assert!(
        out.has("installing shellagent 9.9.9 (npm package `shellagent`) failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.has("No matching version found for shellagent@9.9.9"),
        "{}",
        out.stderr
    );
    assert!(out.has("Setup reaches no network at all"), "{}", out.stderr);
    let status = nc(&lab, &["status", "--json"]);
    assert!(!status.stdout.contains(&name), "{}", status.stdout);
    assert!(!lab.home.join("cache/agents/shellagent/9.9.9").exists());
}
