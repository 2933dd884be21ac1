//! Renders a plugin's templates (minijinja): the files it writes into the state directory,
//! its environment values and its command words, all from one context
//! ([`super::context`]). An optional Rhai hook (`hooks.context`) adds what a template
//! cannot compute, under `hook`. Undefined variables are errors, never empty strings.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

use crate::blueprint::plugin::{PluginManifest, Replace};

/// A file to write into the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Relative to the state directory.
    pub path: String,
    pub contents: String,
    pub replace: Replace,
}

/// Everything a plugin renders for one start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rendered {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub files: Vec<RenderedFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("plugin `{plugin}`: {what}")]
    Template {
        plugin: String,
        /// `start.files[0] (config.yaml.j2)`, `start.env.HOME`, `start.command[1]`.
        what: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("plugin `{plugin}`: the file {file} named by the manifest is missing")]
    MissingFile { plugin: String, file: String },
    #[error("plugin `{plugin}`: hook {file}")]
    Hook {
        plugin: String,
        file: String,
        #[source]
        source: Box<rhai::EvalAltResult>,
    },
    #[error("plugin `{plugin}`: hook {file} must return a map")]
    HookResult { plugin: String, file: String },
}

/// Renders the manifest's command, environment and files. `files` holds the plugin
/// directory's files by relative path.
pub fn render(
    m: &PluginManifest,
    files: &BTreeMap<String, String>,
    mut ctx: Value,
) -> Result<Rendered, RenderError> {
    let plugin = m.metadata.name.as_str();
    if let Some(hook) = m.hooks.as_ref().and_then(|h| h.context.as_deref()) {
        let text = file(plugin, files, hook)?;
        ctx["hook"] = run_hook(plugin, hook, text, &ctx)?;
    }
    let env = environment();
    let value = minijinja::Value::from(minijinja::value::Serde(&ctx));
    let word = |what: String, s: &str| {
        env.render_str(s, value.clone())
            .map_err(|source| RenderError::Template {
                plugin: plugin.into(),
                what,
                source,
            })
    };
    let mut out = Rendered::default();
    for (i, w) in m.start.command.iter().enumerate() {
        out.argv.push(word(format!("start.command[{i}]"), w)?);
    }
    for (k, v) in &m.start.env {
        out.env
            .insert(k.clone(), word(format!("start.env.{k}"), v)?);
    }
    for (i, f) in m.start.files.iter().enumerate() {
        let text = file(plugin, files, &f.template)?;
        let contents = word(format!("start.files[{i}] ({})", f.template), text)?;
        out.files.push(RenderedFile {
            path: f.path.clone(),
            contents,
            replace: f.replace,
        });
    }
    Ok(out)
}

/// Strict about undefined names; block tags take their line with them and trailing newlines
/// stay, so JSON and YAML templates read like the files they make.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build();
    // The default delimiters always build; a failure would only lose the whitespace options.
    if let Ok(syntax) = syntax {
        env.set_syntax(syntax);
    }
    env
}

fn file<'f>(
    plugin: &str,
    files: &'f BTreeMap<String, String>,
    rel: &str,
) -> Result<&'f str, RenderError> {
    files
        .get(rel)
        .map(String::as_str)
        .ok_or_else(|| RenderError::MissingFile {
            plugin: plugin.into(),
            file: rel.into(),
        })
}

/// Calls the hook's `fn context(ctx)` with tight limits; its map goes under `hook`.
fn run_hook(plugin: &str, file: &str, text: &str, ctx: &Value) -> Result<Value, RenderError> {
    let err = |source: Box<rhai::EvalAltResult>| RenderError::Hook {
        plugin: plugin.into(),
        file: file.into(),
        source,
    };
    let mut engine = rhai::Engine::new();
    engine.set_max_operations(1_000_000);
    engine.set_max_call_levels(32);
    engine.set_max_string_size(1 << 20);
    let ast = engine.compile(text).map_err(|e| err(e.into()))?;
    let arg = rhai::serde::to_dynamic(ctx).map_err(err)?;
    let result: rhai::Dynamic = engine
        .call_fn(&mut rhai::Scope::new(), &ast, "context", (arg,))
        .map_err(err)?;
    if !result.is_map() {
        return Err(RenderError::HookResult {
            plugin: plugin.into(),
            file: file.into(),
        });
    }
    rhai::serde::from_dynamic(&result).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(yaml: &str) -> PluginManifest {
        let head = "apiVersion: nemoclaw.dev/v1\nkind: Plugin\nmetadata: {name: t}\n";
        serde_saphyr::from_str(&format!("{head}{yaml}")).unwrap()
    }

    #[test]
    fn files_env_and_command_come_from_one_context() {
        let m = manifest(concat!(
            "start:\n  command: [agent, '--port={{ ports[0] }}']\n",
            "  env: {MODEL: '{{ inference.defaultModel }}'}\n",
            "  files: [{path: a/c.json, template: c.json.j2}]\nports: [8642]\n"
        ));
        let files = BTreeMap::from([(
            "c.json.j2".to_string(),
            "{\"models\": [{% for m in inference.models %}{{ m.id | tojson }}{% if not loop.last %}, {% endif %}{% endfor %}]}\n".to_string(),
        )]);
        let ctx = json!({"ports": [8642], "inference": {"defaultModel": "m1", "models": [{"id": "m1"}, {"id": "m\"2"}]}});
        let r = render(&m, &files, ctx).unwrap();
        assert_eq!(r.argv, vec!["agent", "--port=8642"]);
        assert_eq!(r.env["MODEL"], "m1");
        assert_eq!(r.files[0].path, "a/c.json");
        assert_eq!(r.files[0].contents, "{\"models\": [\"m1\", \"m\\\"2\"]}\n");
        let parsed: Value = serde_json::from_str(&r.files[0].contents).unwrap();
        assert_eq!(parsed["models"][1], "m\"2");
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_the_field() {
        let m = manifest("start:\n  env: {X: '{{ nothing.here }}'}\n");
        let e = render(&m, &BTreeMap::new(), json!({})).unwrap_err();
        assert!(e.to_string().contains("start.env.X"), "{e}");
    }

    #[test]
    fn the_hook_adds_computed_values() {
        let m = manifest(concat!(
            "start:\n  env: {CTX: '{{ hook.window }}'}\n",
            "hooks: {context: hooks/ctx.rhai}\n"
        ));
        let hook = "fn context(ctx) { #{window: ctx.inference.models.len() * 1000} }";
        let files = BTreeMap::from([("hooks/ctx.rhai".to_string(), hook.to_string())]);
        let ctx = json!({"inference": {"models": [{"id": "a"}, {"id": "b"}]}, "hook": {}});
        let r = render(&m, &files, ctx).unwrap();
        assert_eq!(r.env["CTX"], "2000");
        let bad = BTreeMap::from([(
            "hooks/ctx.rhai".to_string(),
            "fn context(ctx) { 1 }".to_string(),
        )]);
        let e = render(&m, &bad, json!({"hook": {}})).unwrap_err();
        assert!(matches!(e, RenderError::HookResult { .. }), "{e}");
    }
}
