//! Checks of one plugin (`plugins/<name>/plugin.yaml` and the files it names) beyond its
//! types, the way `validate` checks a blueprint: every problem with a stable code, a hint, and
//! `file:line:col` — in the manifest, or in the template or hook at fault.
//!
//! Pure apart from the two callbacks: `file` reads a file of the plugin's directory (asked only
//! for relative paths without `.` or `..`), `presets` says whether an egress preset exists. `validate`
//! runs it on a source's plugins ([`crate::blueprint::set`]), and the plugin registry on every
//! plugin it loads, so a bad plugin is refused at run time with the same diagnostics.

use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use nix::sys::signal::Signal;

use super::{PluginManifest, KIND_PLUGIN};
use crate::blueprint::diag::Diagnostic;
use crate::blueprint::load::parse_as;
use crate::blueprint::set::locate;
use crate::blueprint::source_map::SourceMap;
use crate::blueprint::types::API_VERSION;
use crate::blueprint::validate::{check_name, Finding};

/// Checks the manifest `text` (read from `manifest_path`, in the directory `dir_name`).
/// Returns the manifest when it has no problem, else every problem found.
pub fn check(
    dir_name: &str,
    manifest_path: &Path,
    text: &str,
    file: &dyn Fn(&str) -> Option<String>,
    presets: &dyn Fn(&str) -> bool,
) -> Result<PluginManifest, Vec<Diagnostic>> {
    let m: PluginManifest = parse_as(manifest_path, text).map_err(|d| vec![explain(d)])?;
    let mut c = Checker {
        dir: manifest_path.parent().unwrap_or(Path::new("")),
        file,
        findings: Vec::new(),
        elsewhere: Vec::new(),
    };
    c.header(&m, dir_name);
    c.egress(&m, presets);
    c.paths(&m);
    c.templates(&m);
    c.hook(&m);
    c.stop_health_package(&m);
    if c.findings.is_empty() && c.elsewhere.is_empty() {
        return Ok(m);
    }
    let map = SourceMap::build(text);
    let mut out: Vec<Diagnostic> = c
        .findings
        .into_iter()
        .map(|f| locate(manifest_path, &map, f))
        .collect();
    out.extend(c.elsewhere);
    Err(out)
}

/// Adds a hint to a parse error that has none (a missing step above all).
fn explain(mut d: Diagnostic) -> Diagnostic {
    if d.hint.is_none() {
        d.hint = Some(if d.message.contains("`start`") {
            "every plugin has a `start` step (`start: {}` when the blueprint's agent.command is what runs)".into()
        } else {
            "docs/plugins.md describes plugin.yaml; `nemoclaw schema --kind plugin` prints its schema".into()
        });
    }
    d
}

struct Checker<'a> {
    /// The plugin's directory (where templates and hooks are reported).
    dir: &'a Path,
    file: &'a dyn Fn(&str) -> Option<String>,
    /// Problems in the manifest, by field path.
    findings: Vec<Finding>,
    /// Problems inside a template or hook, already located.
    elsewhere: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn err(&mut self, code: &'static str, path: String, message: String, hint: String) {
        self.findings.push(Finding {
            code,
            path,
            message,
            hint: Some(hint),
            at_key: false,
            warning: false,
            secret: false,
        });
    }

    fn header(&mut self, m: &PluginManifest, dir_name: &str) {
        if m.api_version != API_VERSION {
            let msg = format!("unsupported apiVersion `{}`", m.api_version);
            let hint = format!("this release reads `apiVersion: {API_VERSION}`");
            self.err("plugin.api-version", "apiVersion".into(), msg, hint);
        }
        if m.kind != KIND_PLUGIN {
            let msg = format!("`kind: {}` in a plugin manifest", m.kind);
            let hint = format!("a plugin.yaml has `kind: {KIND_PLUGIN}`");
            self.err("plugin.kind", "kind".into(), msg, hint);
        }
        let name = &m.metadata.name;
        let hint = "the name is the agent type blueprints give in `agent.type`".to_string();
        if let Err(e) = check_name(name) {
            self.err("plugin.name", "metadata.name".into(), e.to_string(), hint);
        } else if name != dir_name {
            let msg = format!("the plugin is named `{name}` but its directory is `{dir_name}`");
            let hint =
                format!("rename the directory to `{name}`, or set `metadata.name: {dir_name}`");
            self.err("plugin.name", "metadata.name".into(), msg, hint);
        }
    }

    fn egress(&mut self, m: &PluginManifest, presets: &dyn Fn(&str) -> bool) {
        let setup = m.setup.as_ref().map_or(&[][..], |s| &s.egress[..]);
        for (field, list) in [
            ("setup.egress", setup),
            ("start.egress", &m.start.egress[..]),
        ] {
            for (i, p) in list.iter().enumerate().filter(|(_, p)| !presets(p)) {
                let hint = format!("`nemoclaw presets list` shows the built-ins; define your own in presets/{p}.yaml beside the blueprints");
                self.err(
                    "plugin.unknown-preset",
                    format!("{field}[{i}]"),
                    format!("unknown preset `{p}`"),
                    hint,
                );
            }
        }
    }

    /// Every path the manifest names stays inside the directory it is relative to.
    fn paths(&mut self, m: &PluginManifest) {
        let mut named: Vec<(String, &str, &str)> = Vec::new();
        for (i, f) in m.start.files.iter().enumerate() {
            named.push((
                format!("start.files[{i}].path"),
                &f.path,
                "/workspace/state",
            ));
            named.push((
                format!("start.files[{i}].template"),
                &f.template,
                "the plugin directory",
            ));
        }
        for (i, p) in m.start.path.iter().enumerate() {
            named.push((format!("start.path[{i}]"), p, "the install directory"));
        }
        if let Some(c) = m.setup.as_ref().and_then(|s| s.creates.as_deref()) {
            named.push(("setup.creates".into(), c, "the install directory"));
        }
        if let Some(h) = hook_file(m) {
            named.push(("hooks.context".into(), h, "the plugin directory"));
        }
        for (field, p, base) in named.into_iter().filter(|(_, p, _)| !relative_inside(p)) {
            let msg = format!("`{p}` must be a relative path without `.` or `..`");
            self.err(
                "plugin.path",
                field,
                msg,
                format!("the path is relative to {base}"),
            );
        }
    }

    /// The command words, environment values and template files parse as templates.
    fn templates(&mut self, m: &PluginManifest) {
        let env = minijinja::Environment::new();
        let hint = "fix the template's syntax (minijinja: {{ value }}, {% if %}…{% endif %})";
        let words = m
            .start
            .command
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("start.command[{i}]"), w));
        let values = m
            .start
            .env
            .iter()
            .map(|(k, v)| (format!("start.env.{k}"), v));
        for (field, text) in words.chain(values).collect::<Vec<_>>() {
            if let Err(e) = env.template_from_str(text) {
                self.err("plugin.template", field, template_message(&e), hint.into());
            }
        }
        for (i, f) in m.start.files.iter().enumerate() {
            let Some(text) = self.read(&format!("start.files[{i}].template"), &f.template) else {
                continue;
            };
            if let Err(e) = env.template_from_str(&text) {
                let (line, col) = template_position(&e, &text);
                let d = Diagnostic::error(
                    &self.dir.join(&f.template),
                    "plugin.template",
                    template_message(&e),
                );
                self.elsewhere.push(d.at(line, col).hint(hint));
            }
        }
    }

    /// The hook compiles and defines `fn context(ctx)`.
    fn hook(&mut self, m: &PluginManifest) {
        let Some(rel) = hook_file(m) else { return };
        let Some(text) = self.read("hooks.context", rel) else {
            return;
        };
        let ast = match rhai::Engine::new().compile(&text) {
            Ok(ast) => ast,
            Err(e) => {
                let mut d = Diagnostic::error(
                    &self.dir.join(rel),
                    "plugin.hook",
                    format!("does not compile as Rhai: {}", e.err_type()),
                )
                .hint("fix the script (Rhai); it defines `fn context(ctx)` returning a map");
                if let (Some(l), Some(c)) = (e.position().line(), e.position().position()) {
                    d = d.at(l, c);
                }
                self.elsewhere.push(d);
                return;
            }
        };
        if !ast
            .iter_functions()
            .any(|f| f.name == "context" && f.params.len() == 1)
        {
            let msg = format!("hook {rel} defines no `fn context(ctx)` (one parameter)");
            let hint = "define `fn context(ctx) { #{ ... } }`: it gets the template context and returns a map, added as `hook`";
            self.err("plugin.hook", "hooks.context".into(), msg, hint.into());
        }
    }

    fn stop_health_package(&mut self, m: &PluginManifest) {
        if Signal::from_str(&m.stop.signal).is_err() {
            let msg = format!("`{}` is not a signal name", m.stop.signal);
            let hint = "a name such as SIGTERM, SIGINT or SIGQUIT".to_string();
            self.err("plugin.signal", "stop.signal".into(), msg, hint);
        }
        if let Some(h) = &m.health_check {
            if h.exec.is_some() == h.http.is_some() {
                let msg = "a health check has exactly one of `exec` or `http`".to_string();
                let hint = "probe with a command (`exec: [...]`) or a URL path (`http: {port: N, path: /}`), not both".to_string();
                self.err("plugin.health-check", "healthCheck".into(), msg, hint);
            }
        }
        if m.package.is_some() && m.setup.is_none() {
            let msg = "`package` names what `setup` installs, but there is no `setup`".to_string();
            let hint =
                "add a `setup` step that installs the package, or remove `package`".to_string();
            self.err("plugin.package", "package".into(), msg, hint);
        }
    }

    /// A file of the plugin named at `field`; missing is reported there. Paths that could
    /// leave the directory are never read (reported by [`Self::paths`]).
    fn read(&mut self, field: &str, rel: &str) -> Option<String> {
        if !relative_inside(rel) {
            return None;
        }
        let text = (self.file)(rel);
        if text.is_none() {
            let msg = format!("{rel} does not exist in the plugin directory");
            let hint =
                "templates and hooks are files of the plugin directory, named relative to it"
                    .to_string();
            self.err("plugin.missing-file", field.into(), msg, hint);
        }
        text
    }
}

fn hook_file(m: &PluginManifest) -> Option<&str> {
    m.hooks.as_ref().and_then(|h| h.context.as_deref())
}

/// Not empty, not absolute, no `.` or `..` (files are looked up by exactly this name).
fn relative_inside(p: &str) -> bool {
    !p.is_empty()
        && !p.split('/').any(|part| part == "." || part == "..")
        && PathBuf::from(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// The error's kind and detail, without minijinja's `(in <string>:N)`.
fn template_message(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("template does not parse: {}: {d}", e.kind()),
        None => format!("template does not parse: {}", e.kind()),
    }
}

/// 1-based line and column of a template error: from its byte range when it has one.
fn template_position(e: &minijinja::Error, text: &str) -> (usize, usize) {
    if let Some(start) = e
        .range()
        .map(|r| r.start)
        .filter(|&s| text.is_char_boundary(s))
    {
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        return (line, col);
    }
    (e.line().unwrap_or(1), 1)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    const HEAD: &str = "apiVersion: nemoclaw.dev/v1\nkind: Plugin\nmetadata:\n  name: x\n";

    /// Checks `HEAD` + `body` as plugin `x` with these files; `npm` is the only preset.
    fn run(body: &str, files: &[(&str, &str)]) -> Result<PluginManifest, Vec<Diagnostic>> {
        let files: BTreeMap<String, String> = files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let read = |rel: &str| {
            assert!(relative_inside(rel), "asked to read {rel}");
            files.get(rel).cloned()
        };
        check(
            "x",
            Path::new("p/x/plugin.yaml"),
            &format!("{HEAD}{body}"),
            &read,
            &|p| p == "npm",
        )
    }

    /// The only diagnostic: (file, code, line, column).
    fn one(body: &str, files: &[(&str, &str)]) -> (String, &'static str, usize, usize) {
        let diags = run(body, files).unwrap_err();
        assert_eq!(diags.len(), 1, "{diags:#?}");
        let d = &diags[0];
        assert!(d.hint.is_some(), "{d:?}");
        (
            d.file.display().to_string(),
            d.code,
            d.line.unwrap(),
            d.column.unwrap(),
        )
    }

    #[test]
    fn a_minimal_plugin_passes() {
        let m = run("start: {}\n", &[]).unwrap();
        assert_eq!(m.metadata.name, "x");
    }

    #[test]
    fn a_missing_step_is_named_with_a_hint() {
        let diags = run("stop: {signal: SIGINT}\n", &[]).unwrap_err();
        let d = &diags[0];
        assert_eq!(d.code, "schema.missing-field");
        assert!(d.message.contains("`start`"), "{d:?}");
        assert!(d.hint.as_deref().unwrap().contains("`start: {}`"), "{d:?}");
        assert!(d.line.is_some());
    }

    #[test]
    fn an_unknown_field_has_its_position() {
        let (_, code, l, c) = one("start:\n  comand: [a]\n", &[]);
        assert_eq!((code, l, c), ("schema.unknown-field", 6, 3));
    }

    #[test]
    fn header_kind_api_version_and_name() {
        let bad = |head: &str| {
            let text = format!("{head}start: {{}}\n");
            check("x", Path::new("plugin.yaml"), &text, &|_| None, &|_| true).unwrap_err()
        };
        let d = bad("apiVersion: nemoclaw.dev/v2\nkind: Plugin\nmetadata: {name: x}\n");
        assert_eq!((d[0].code, d[0].line), ("plugin.api-version", Some(1)));
        let d = bad("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata: {name: x}\n");
        assert_eq!((d[0].code, d[0].line), ("plugin.kind", Some(2)));
        let d = bad("apiVersion: nemoclaw.dev/v1\nkind: Plugin\nmetadata: {name: y}\n");
        assert_eq!(
            (d[0].code, d[0].line, d[0].column),
            ("plugin.name", Some(3), Some(18))
        );
        assert!(d[0].message.contains("directory is `x`"), "{:?}", d[0]);
        let d = bad("apiVersion: nemoclaw.dev/v1\nkind: Plugin\nmetadata: {name: My_Agent}\n");
        assert_eq!(d[0].code, "plugin.name");
        assert!(d[0].message.contains("DNS label"), "{:?}", d[0]);
    }

    #[test]
    fn egress_names_known_presets() {
        let body = "setup:\n  egress: [npm, pipy]\n  script: 'true'\nstart: {egress: [npm]}\n";
        let (_, code, l, c) = one(body, &[]);
        assert_eq!((code, l, c), ("plugin.unknown-preset", 6, 17));
        let (_, code, l, _) = one("start:\n  egress: [nope]\n", &[]);
        assert_eq!((code, l), ("plugin.unknown-preset", 6));
    }

    #[test]
    fn paths_stay_inside_and_are_never_read_outside() {
        for (body, line) in [
            ("start:\n  files: [{path: ../x, template: t.j2}]\n", 6),
            ("start:\n  files: [{path: a, template: /etc/passwd}]\n", 6),
            ("start:\n  path: [bin, ../../usr/bin]\n", 6),
            ("setup: {script: 'true', creates: /x}\nstart: {}\n", 5),
            ("start: {}\nhooks: {context: ../h.rhai}\n", 6),
            ("start: {}\nhooks: {context: ./h.rhai}\n", 6),
        ] {
            let (_, code, l, _) = one(body, &[("t.j2", "")]);
            assert_eq!((code, l), ("plugin.path", line), "{body}");
        }
    }

    #[test]
    fn a_missing_template_or_hook_is_reported_at_its_field() {
        let (file, code, l, c) = one("start:\n  files:\n    - {path: a, template: a.j2}\n", &[]);
        assert_eq!(
            (file.as_str(), code, l, c),
            ("p/x/plugin.yaml", "plugin.missing-file", 7, 27)
        );
        let (_, code, l, _) = one("start: {}\nhooks:\n  context: h.rhai\n", &[]);
        assert_eq!((code, l), ("plugin.missing-file", 7));
    }

    #[test]
    fn a_bad_template_is_reported_in_the_template() {
        let body = "start:\n  files:\n    - {path: a, template: t/a.j2}\n";
        let (file, code, l, c) = one(body, &[("t/a.j2", "line one\n{% if x %}\nmore {{ y }\n")]);
        assert_eq!((file.as_str(), code), ("p/x/t/a.j2", "plugin.template"));
        assert_eq!(l, 3, "{c}");
        assert!(c > 1);
        let (file, code, l, _) = one("start:\n  env: {A: '{{ oops'}\n", &[]);
        assert_eq!(
            (file.as_str(), code, l),
            ("p/x/plugin.yaml", "plugin.template", 6)
        );
    }

    #[test]
    fn a_bad_hook_is_reported_in_the_hook() {
        let body = "start: {}\nhooks: {context: h.rhai}\n";
        let (file, code, l, c) = one(body, &[("h.rhai", "fn context(ctx) {\n  let x = ;\n}\n")]);
        assert_eq!(
            (file.as_str(), code, l, c),
            ("p/x/h.rhai", "plugin.hook", 2, 11)
        );
        let (file, code, l, _) = one(body, &[("h.rhai", "fn ctx(c) { #{} }\n")]);
        assert_eq!(
            (file.as_str(), code, l),
            ("p/x/plugin.yaml", "plugin.hook", 6)
        );
        let (_, code, _, _) = one(body, &[("h.rhai", "fn context(a, b) { #{} }\n")]);
        assert_eq!(code, "plugin.hook");
        run(body, &[("h.rhai", "fn context(ctx) { #{n: 1} }\n")]).unwrap();
    }

    #[test]
    fn stop_health_check_and_package() {
        let (_, code, l, _) = one("start: {}\nstop: {signal: SIGTREM}\n", &[]);
        assert_eq!((code, l), ("plugin.signal", 6));
        run("start: {}\nstop: {signal: SIGINT}\n", &[]).unwrap();
        let both = "start: {}\nhealthCheck:\n  exec: [true]\n  http: {port: 80}\n";
        let (_, code, l, _) = one(both, &[]);
        assert_eq!((code, l), ("plugin.health-check", 7));
        let (_, code, l, _) = one("start: {}\nhealthCheck: {interval: 1s}\n", &[]);
        assert_eq!((code, l), ("plugin.health-check", 6));
        let pkg = "package: {name: a, registry: npm, defaultVersion: '1'}\nstart: {}\n";
        let (_, code, l, _) = one(pkg, &[]);
        assert_eq!((code, l), ("plugin.package", 5));
    }

    #[test]
    fn every_problem_is_reported_in_one_run() {
        let body = "start:\n  egress: [nope]\n  path: [/bin]\nstop: {signal: NOPE}\n";
        let diags = run(body, &[]).unwrap_err();
        let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
        assert_eq!(
            codes,
            ["plugin.unknown-preset", "plugin.path", "plugin.signal"]
        );
    }

    /// The repository's plugins/ (what the binary embeds) all pass, with the built-in presets.
    #[test]
    fn every_builtin_plugin_passes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
        let mut names = Vec::new();
        for e in std::fs::read_dir(&root).unwrap() {
            let dir = e.unwrap().path();
            let name = dir.file_name().unwrap().to_str().unwrap().to_string();
            let manifest = dir.join(crate::blueprint::plugin::MANIFEST);
            let text = std::fs::read_to_string(&manifest).unwrap();
            let read = |rel: &str| std::fs::read_to_string(dir.join(rel)).ok();
            let known = |p: &str| crate::policy::presets::builtin_names().any(|b| b == p);
            if let Err(d) = check(&name, &manifest, &text, &read, &known) {
                panic!("{name}: {d:#?}");
            }
            names.push(name);
        }
        names.sort();
        let mut builtin = crate::blueprint::plugin::BUILTIN_NAMES.to_vec();
        builtin.sort_unstable();
        assert_eq!(names, builtin);
    }
}
