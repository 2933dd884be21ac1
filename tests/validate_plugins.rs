#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "tests"
)]
//! `nemoclaw validate` checks a source's plugins as it checks its blueprints: a broken
//! `plugins/<name>/plugin.yaml`, template or hook is an error at its own file, line and column
//! (human and JSON), reported once however many blueprints share the directory; a good custom
//! plugin validates; the home's plugins are checked and known; and the registry refuses a bad
//! plugin at run time with the same diagnostics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nemoclaw::plugin::registry::{load_dir, Origin, RegistryError};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `nemoclaw validate ARGS` with its own empty home.
fn validate(args: &[&Path], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
        .arg("validate")
        .args(args)
        .env("NEMOCLAW_HOME", home)
        .current_dir(root())
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The four broken-plugin examples and what each must report first: (plugin file, code, line,
/// column), from their expect.txt.
fn plugin_cases() -> Vec<(PathBuf, String, String, u64, u64)> {
    let mut out = Vec::new();
    for case in [
        "plugin-unknown-field",
        "plugin-missing-step",
        "plugin-bad-hook",
        "plugin-bad-template",
    ] {
        let dir = PathBuf::from("examples/invalid").join(case);
        let expect = std::fs::read_to_string(root().join(&dir).join("expect.txt")).unwrap();
        let first: Vec<&str> = expect.lines().next().unwrap().split_whitespace().collect();
        let (l, c) = first[2].split_once(':').unwrap();
        out.push((
            dir,
            first[0].to_string(),
            first[1].to_string(),
            l.parse().unwrap(),
            c.parse().unwrap(),
        ));
    }
    out
}

#[test]
fn each_broken_plugin_is_named_with_its_file_line_column_and_code() {
    let home = tempfile::tempdir().unwrap();
    let codes: Vec<String> = plugin_cases().into_iter().map(|c| c.2).collect();
    assert_eq!(
        codes,
        [
            "schema.unknown-field",
            "schema.missing-field",
            "plugin.hook",
            "plugin.template"
        ]
    );
    for (dir, file, code, l, c) in plugin_cases() {
        let o = validate(&[&dir], home.path());
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let headline = format!("{}:{l}:{c}: error[{code}]", dir.join(&file).display());
        assert!(stderr(&o).contains(&headline), "{headline}\n{}", stderr(&o));
        // The source line is shown under it, and a hint.
        assert!(stderr(&o).contains(&format!(" {l} | ")), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("the plugin `x` is there but has errors"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn json_has_the_plugin_diagnostics() {
    let home = tempfile::tempdir().unwrap();
    for (dir, file, code, l, c) in plugin_cases() {
        let o = validate(&[Path::new("--json"), &dir], home.path());
        assert_eq!(o.status.code(), Some(1));
        let v = json(&o);
        assert_eq!(v["valid"], false);
        let diags = v["diagnostics"].as_array().unwrap();
        let d = diags
            .iter()
            .find(|d| d["code"] == code.as_str())
            .unwrap_or_else(|| panic!("no {code}: {v:#}"));
        assert_eq!(d["file"], dir.join(&file).to_str().unwrap(), "{d:#}");
        assert_eq!(
            (d["line"].as_u64(), d["column"].as_u64()),
            (Some(l), Some(c))
        );
        assert_eq!(d["severity"], "error");
        assert!(!d["hint"].as_str().unwrap().is_empty(), "{d:#}");
        assert!(v["blueprints"].as_array().unwrap().is_empty(), "{v:#}");
    }
}

/// A shell-script agent with a template and a context hook.
fn write_plugin(dir: &Path, name: &str, hook: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.join("hooks")).unwrap();
    let manifest = format!(
        "apiVersion: nemoclaw.dev/v1\nkind: Plugin\nmetadata:\n  name: {name}\n\
         setup:\n  egress: [npm, internal]\n  script: echo hi > \"$AGENT_DIR/hi\"\n  creates: hi\n\
         start:\n  command: [sh, -c, 'exec sleep {{{{ hook.seconds }}}}']\n  path: [bin]\n\
         \x20 env: {{MODEL: '{{{{ inference.defaultModel }}}}'}}\n\
         \x20 files:\n    - {{path: {name}/agent.conf, template: agent.conf.j2}}\n\
         stop: {{signal: SIGINT, timeout: 5s}}\n\
         healthCheck:\n  http: {{port: 8181, path: /}}\n\
         ports: [8181]\nhooks: {{context: hooks/context.rhai}}\n"
    );
    std::fs::write(p.join("plugin.yaml"), manifest).unwrap();
    std::fs::write(
        p.join("agent.conf.j2"),
        "{% for m in inference.models %}model={{ m.id }}\n{% endfor %}",
    )
    .unwrap();
    std::fs::write(p.join("hooks/context.rhai"), hook).unwrap();
}

const GOOD_HOOK: &str = "fn context(ctx) { #{seconds: ctx.inference.models.len() * 60} }\n";

fn write_blueprint(dir: &Path, name: &str, agent: &str) {
    let bp = format!(
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: 1\n\
         agent:\n  type: {agent}\n"
    );
    std::fs::write(dir.join(format!("{name}.yaml")), bp).unwrap();
}

/// A source with a custom plugin (and the `internal` preset it names) and one blueprint.
fn good_source() -> tempfile::TempDir {
    let src = tempfile::tempdir().unwrap();
    write_plugin(&src.path().join("plugins"), "shellagent", GOOD_HOOK);
    std::fs::create_dir_all(src.path().join("presets")).unwrap();
    std::fs::write(
        src.path().join("presets/internal.yaml"),
        "domains: [wiki.example.com]\n",
    )
    .unwrap();
    write_blueprint(src.path(), "a", "shellagent");
    src
}

#[test]
fn a_valid_custom_plugin_validates() {
    let home = tempfile::tempdir().unwrap();
    let src = good_source();
    let o = validate(&[Path::new("--json"), src.path()], home.path());
    let v = json(&o);
    assert_eq!(o.status.code(), Some(0), "{v:#}");
    assert_eq!(v["blueprints"][0]["name"], "a");
    assert_eq!(v["summary"]["errors"], 0);
    // Without the source's preset the plugin is refused, and says which preset.
    std::fs::remove_file(src.path().join("presets/internal.yaml")).unwrap();
    let o = validate(&[src.path()], home.path());
    assert_eq!(o.status.code(), Some(1));
    let file = src.path().join("plugins/shellagent/plugin.yaml");
    let want = format!(
        "{}:6:17: error[plugin.unknown-preset]: unknown preset `internal`",
        file.display()
    );
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
}

#[test]
fn a_plugin_shared_by_several_blueprints_is_reported_once() {
    let home = tempfile::tempdir().unwrap();
    let src = good_source();
    let hook = src.path().join("plugins/shellagent/hooks/context.rhai");
    std::fs::write(&hook, "fn context(ctx) {\n  #{seconds: }\n}\n").unwrap();
    write_blueprint(src.path(), "b", "shellagent");
    // The directory, both its files named one by one, and the same again through a link.
    let other = tempfile::tempdir().unwrap();
    let link = other.path().join("link");
    std::os::unix::fs::symlink(src.path(), &link).unwrap();
    let (a, b) = (src.path().join("a.yaml"), src.path().join("b.yaml"));
    let o = validate(
        &[
            Path::new("--json"),
            src.path(),
            &a,
            &b,
            &link.join("a.yaml"),
        ],
        home.path(),
    );
    let v = json(&o);
    let in_hook: Vec<_> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "plugin.hook")
        .collect();
    assert_eq!(in_hook.len(), 1, "{v:#}");
    assert_eq!(in_hook[0]["file"], hook.to_str().unwrap());
    assert_eq!(in_hook[0]["line"], 2, "{v:#}");
}

#[test]
fn the_homes_plugins_are_checked_and_known() {
    let home = tempfile::tempdir().unwrap();
    write_plugin(&home.path().join("plugins"), "homeagent", GOOD_HOOK);
    // `internal` is a preset of the home, beside its plugins.
    std::fs::create_dir_all(home.path().join("presets")).unwrap();
    std::fs::write(
        home.path().join("presets/internal.yaml"),
        "domains: [wiki.example.com]\n",
    )
    .unwrap();
    let src = tempfile::tempdir().unwrap();
    write_blueprint(src.path(), "h", "homeagent");
    let o = validate(&[src.path()], home.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A broken one is reported at its file, and is no agent type.
    let hook = home.path().join("plugins/homeagent/hooks/context.rhai");
    std::fs::write(&hook, "fn context() { #{} }\n").unwrap();
    let o = validate(&[src.path()], home.path());
    assert_eq!(o.status.code(), Some(1));
    let manifest = home.path().join("plugins/homeagent/plugin.yaml");
    let want = format!("{}:19:18: error[plugin.hook]", manifest.display());
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unknown agent type `homeagent`"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("the plugin `homeagent` is there but has errors"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_registry_refuses_a_bad_plugin_with_the_same_diagnostics() {
    let home = tempfile::tempdir().unwrap();
    for (dir, ..) in plugin_cases() {
        let plugin = dir.join("plugins/x");
        let Err(RegistryError::Invalid { diagnostics }) =
            load_dir(&plugin, Origin::Source(plugin.clone()))
        else {
            panic!("{} loaded", plugin.display());
        };
        let o = validate(&[Path::new("--json"), &dir], home.path());
        let v = json(&o);
        let from_validate: Vec<_> = v["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["code"] != "agent.unknown-type")
            .cloned()
            .collect();
        let from_registry = serde_json::to_value(&diagnostics).unwrap();
        assert_eq!(from_registry.as_array().unwrap(), &from_validate);
    }
    let src = good_source();
    let good = src.path().join("plugins/shellagent");
    let p = load_dir(&good, Origin::Source(good.clone())).unwrap();
    assert_eq!(p.manifest.metadata.name, "shellagent");
}
