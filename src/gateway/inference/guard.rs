//! Guards: operator Rhai scripts run on every request (and, if asked, every response), and the
//! built-in secret guard.
//!
//! A script sees `request` (the parsed body; `response` on the response pass, which runs on
//! non-streamed answers only: streams pass through untouched), `phase` (`request` or
//! `response`), `endpoint`, `model` and `prompt` (every message text joined by newlines, of the
//! request or of the answer), and ends with one of
//! `allow()` (or nothing), `deny("reason")` or `rewrite(new_body)`. Helpers: `regex_match(text,
//! pattern)` and `regex_replace(text, pattern, replacement)`. Scripts run under an operation
//! limit and a time limit; a script that fails or overruns denies the request (fail closed).
//!
//! The built-in guard refuses a request that carries, anywhere in a string, a credential the
//! gateway holds (exact match), and redacts common secret shapes (PEM private keys, cloud and
//! API keys) before anything leaves, reporting what it did.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use memchr::memmem::Finder;
use regex::Regex;
use rhai::{Dynamic, Engine, Map as RMap, Scope, AST};
use serde_json::{Map, Value};

use super::error::InferenceError;
use crate::blueprint::credential::looks_like_secret;
use crate::gateway::credentials::Secret;

/// What a guard decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow,
    Deny(String),
    Rewrite(Map<String, Value>),
}

/// Bounds on one script run.
pub const MAX_OPERATIONS: u64 = 200_000;
pub const TIME_LIMIT: Duration = Duration::from_millis(20);

struct Script {
    name: String,
    ast: AST,
    on_response: bool,
}

/// The operator's scripts, compiled once.
pub struct Guards {
    engine: Engine,
    scripts: Vec<Script>,
}

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

impl Guards {
    /// Reads and compiles `inference.guards` (paths relative to `base_dir`).
    pub fn load(
        specs: &[crate::blueprint::Guard],
        base_dir: &Path,
    ) -> Result<Guards, InferenceError> {
        let mut sources = Vec::new();
        for g in specs {
            let path: PathBuf = if g.script.is_absolute() {
                g.script.clone()
            } else {
                base_dir.join(&g.script)
            };
            let text =
                std::fs::read_to_string(&path).map_err(|source| InferenceError::GuardRead {
                    path: path.clone(),
                    source,
                })?;
            sources.push((path, text, g.on_response));
        }
        Guards::compile(sources)
    }

    /// Compiles scripts given as (name, source, on_response).
    pub fn compile(sources: Vec<(PathBuf, String, bool)>) -> Result<Guards, InferenceError> {
        let engine = engine();
        let mut scripts = Vec::new();
        for (path, text, on_response) in sources {
            let ast = engine
                .compile(&text)
                .map_err(|source| InferenceError::GuardCompile {
                    path: path.clone(),
                    source,
                })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            scripts.push(Script {
                name,
                ast,
                on_response,
            });
        }
        Ok(Guards { engine, scripts })
    }

    pub fn is_empty(&self) -> bool {
        self.scripts.is_empty()
    }
    pub fn has_response_guards(&self) -> bool {
        self.scripts.iter().any(|s| s.on_response)
    }

    /// Runs every request guard in order; rewrites chain. Returns the guard names that
    /// rewrote, or `(guard, reason)` for a denial.
    pub fn on_request(
        &self,
        endpoint: &str,
        model: &str,
        body: &mut Map<String, Value>,
    ) -> Result<Vec<String>, (String, String)> {
        self.run(false, endpoint, model, body)
    }

    /// Runs the guards marked `onResponse` on a (non-streamed) response body.
    pub fn on_response(
        &self,
        endpoint: &str,
        model: &str,
        body: &mut Map<String, Value>,
    ) -> Result<Vec<String>, (String, String)> {
        self.run(true, endpoint, model, body)
    }

    fn run(
        &self,
        response: bool,
        endpoint: &str,
        model: &str,
        body: &mut Map<String, Value>,
    ) -> Result<Vec<String>, (String, String)> {
        let mut rewrote = Vec::new();
        for s in self.scripts.iter().filter(|s| !response || s.on_response) {
            match self.eval(s, response, endpoint, model, body) {
                Ok(Verdict::Allow) => {}
                Ok(Verdict::Deny(reason)) => return Err((s.name.clone(), reason)),
                Ok(Verdict::Rewrite(new)) => {
                    *body = new;
                    rewrote.push(s.name.clone());
                }
                Err(e) => {
                    let e = crate::error_chain(&e);
                    return Err((s.name.clone(), format!("guard failed ({e}); denying")));
                }
            }
        }
        Ok(rewrote)
    }

    fn eval(
        &self,
        s: &Script,
        response: bool,
        endpoint: &str,
        model: &str,
        body: &Map<String, Value>,
    ) -> Result<Verdict, ScriptError> {
        let doc = rhai::serde::to_dynamic(body).map_err(ScriptError::Run)?;
        let mut scope = Scope::new();
        scope.push_constant("endpoint", endpoint.to_string());
        scope.push_constant("model", model.to_string());
        scope.push_constant("prompt", prompt_text(body));
        scope.push_constant("phase", if response { "response" } else { "request" });
        scope.push(if response { "response" } else { "request" }, doc);
        DEADLINE.with(|d| d.set(Some(Instant::now() + TIME_LIMIT)));
        let out = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &s.ast);
        DEADLINE.with(|d| d.set(None));
        interpret(out.map_err(ScriptError::Run)?)
    }
}

/// Why a script gave no verdict (the request is denied).
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The script failed or overran; the message is rhai's own.
    #[error(transparent)]
    Run(Box<rhai::EvalAltResult>),
    #[error("a guard must end with allow(), deny(reason) or rewrite(body)")]
    NoVerdict,
    #[error("rewrite() needs the new body")]
    NoBody,
    #[error(transparent)]
    BadBody(Box<rhai::EvalAltResult>),
    #[error("rewrite() needs an object")]
    NotAnObject,
}

/// Maps a script's result to a verdict.
fn interpret(v: Dynamic) -> Result<Verdict, ScriptError> {
    if v.is_unit() {
        return Ok(Verdict::Allow);
    }
    if let Some(b) = v.clone().try_cast::<bool>() {
        return Ok(if b {
            Verdict::Allow
        } else {
            Verdict::Deny("denied by guard".into())
        });
    }
    let Some(map) = v.try_cast::<RMap>() else {
        return Err(ScriptError::NoVerdict);
    };
    match map
        .get("action")
        .and_then(|a| a.clone().into_immutable_string().ok())
        .as_deref()
    {
        Some("allow") => Ok(Verdict::Allow),
        Some("deny") => Ok(Verdict::Deny(
            map.get("reason")
                .map(|r| r.to_string())
                .unwrap_or_else(|| "denied by guard".into()),
        )),
        Some("rewrite") => {
            let body = map.get("body").cloned().ok_or(ScriptError::NoBody)?;
            let v: Value = rhai::serde::from_dynamic(&body).map_err(ScriptError::BadBody)?;
            match v {
                Value::Object(m) => Ok(Verdict::Rewrite(m)),
                _ => Err(ScriptError::NotAnObject),
            }
        }
        _ => Err(ScriptError::NoVerdict),
    }
}

fn engine() -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(MAX_OPERATIONS);
    e.set_max_call_levels(32);
    e.set_max_expr_depths(64, 32);
    e.set_max_string_size(32 << 20);
    e.set_max_array_size(100_000);
    e.set_max_map_size(100_000);
    e.disable_symbol("eval");
    e.on_print(|s| tracing::debug!(target: "nemoclaw::guard", "{s}"));
    e.on_debug(|s, _, _| tracing::debug!(target: "nemoclaw::guard", "{s}"));
    e.on_progress(|ops| {
        if ops % 256 == 0 {
            let over = DEADLINE
                .with(|d| d.get())
                .is_some_and(|d| Instant::now() > d);
            if over {
                return Some(Dynamic::from(format!(
                    "time limit of {TIME_LIMIT:?} exceeded"
                )));
            }
        }
        None
    });
    e.register_fn("allow", || -> RMap {
        let mut m = RMap::new();
        m.insert("action".into(), "allow".into());
        m
    });
    e.register_fn("deny", |reason: &str| -> RMap {
        let mut m = RMap::new();
        m.insert("action".into(), "deny".into());
        m.insert("reason".into(), reason.into());
        m
    });
    e.register_fn("rewrite", |body: RMap| -> RMap {
        let mut m = RMap::new();
        m.insert("action".into(), "rewrite".into());
        m.insert("body".into(), body.into());
        m
    });
    let cache: Arc<RwLock<HashMap<String, Regex>>> = Arc::default();
    let c = cache.clone();
    e.register_fn(
        "regex_match",
        move |text: &str, pattern: &str| -> Result<bool, Box<rhai::EvalAltResult>> {
            with_regex(&c, pattern, |re| re.is_match(text))
        },
    );
    let c = cache;
    e.register_fn(
        "regex_replace",
        move |text: &str, pattern: &str, with: &str| -> Result<String, Box<rhai::EvalAltResult>> {
            with_regex(&c, pattern, |re| re.replace_all(text, with).into_owned())
        },
    );
    e
}

fn with_regex<T>(
    cache: &RwLock<HashMap<String, Regex>>,
    pattern: &str,
    f: impl FnOnce(&Regex) -> T,
) -> Result<T, Box<rhai::EvalAltResult>> {
    // A poisoned cache is still whole: it only ever gains complete entries (one insert of a
    // compiled regex), so a panic elsewhere while it was held leaves nothing half-written.
    if let Some(re) = crate::sync::read(cache).get(pattern) {
        return Ok(f(re));
    }
    let re = Regex::new(pattern)
        .map_err(|e| -> Box<rhai::EvalAltResult> { format!("bad regex: {e}").into() })?;
    let out = f(&re);
    let mut w = crate::sync::write(cache);
    if w.len() < 256 {
        w.insert(pattern.to_string(), re);
    }
    Ok(out)
}

/// Every message's text, joined by newlines: of a request, or of an answer on the response
/// pass.
pub fn prompt_text(body: &Map<String, Value>) -> String {
    fn push(out: &mut String, v: &Value) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| push(out, x)),
            Value::Object(o) => {
                for k in ["content", "text", "message"] {
                    if let Some(x) = o.get(k) {
                        push(out, x);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    // Requests (`messages`, `prompt`, `input`, Anthropic `system`) and answers (`choices`,
    // Anthropic `content`).
    for k in [
        "system", "messages", "prompt", "input", "choices", "content",
    ] {
        if let Some(v) = body.get(k) {
            push(&mut out, v);
        }
    }
    out
}

/// The built-in guard.
/// The secret guard's refusal: the request carries a key the gateway holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request contains a credential that this gateway holds for a backend; it is never sent to a model")]
pub struct HeldCredential;

pub struct SecretGuard {
    finders: Vec<Finder<'static>>,
}

/// What the built-in guard did to a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactions {
    pub private_keys: u32,
    pub access_keys: u32,
}

impl Redactions {
    pub fn any(&self) -> bool {
        self.private_keys + self.access_keys > 0
    }
    pub fn describe(&self) -> String {
        format!(
            "secret guard redacted {} private key(s) and {} access key(s)",
            self.private_keys, self.access_keys
        )
    }
}

fn shapes() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(concat!(
            r"(?s)(?P<pem>-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|[A-Za-z0-9+/=\s]*))",
            r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
            r"|\bAIza[0-9A-Za-z_\-]{35}",
            r"|\bgh[pousr]_[A-Za-z0-9]{30,}",
            r"|\bgithub_pat_[A-Za-z0-9_]{22,}",
            r"|\bglpat-[A-Za-z0-9_\-]{20,}",
            r"|\bnvapi-[A-Za-z0-9_\-]{20,}",
            r"|\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}",
            r"|\bxox[abpr]-[A-Za-z0-9\-]{10,}",
            r"|\bhf_[A-Za-z0-9]{30,}",
            r"|(?i:aws_secret_access_key)\s*[=:]\s*[A-Za-z0-9/+=]{40}",
        ))
        .expect("secret shapes compile")
    })
}

impl SecretGuard {
    /// Keys shorter than 8 characters are not scanned for (they would match ordinary text).
    pub fn new<'a>(held: impl Iterator<Item = &'a Secret>) -> SecretGuard {
        let finders = held
            .filter(|s| s.expose().len() >= 8)
            .map(|s| Finder::new(s.expose().as_bytes()).into_owned())
            .collect();
        SecretGuard { finders }
    }

    /// A scrubber for one streamed answer, for the same keys.
    pub fn stream_scrub(&self) -> super::scrub_stream::StreamScrub {
        super::scrub_stream::StreamScrub::new(self.finders.iter().map(|f| f.needle()))
    }

    /// True when `text` contains a held credential.
    pub fn holds_key_in(&self, text: &[u8]) -> bool {
        self.finders.iter().any(|f| f.find(text).is_some())
    }

    /// Refuses a body carrying a held key (`Err` with the reason) and redacts secret shapes
    /// in every string in place.
    pub fn check(&self, body: &mut Map<String, Value>) -> Result<Redactions, HeldCredential> {
        let mut r = Redactions::default();
        for v in body.values_mut() {
            self.walk(v, &mut r)?;
        }
        Ok(r)
    }

    fn walk(&self, v: &mut Value, r: &mut Redactions) -> Result<(), HeldCredential> {
        match v {
            Value::String(s) => {
                if self.holds_key_in(s.as_bytes()) {
                    return Err(HeldCredential);
                }
                if let Some(new) = redact_shapes(s, r) {
                    *s = new;
                }
            }
            Value::Array(a) => {
                for x in a {
                    self.walk(x, r)?;
                }
            }
            Value::Object(o) => {
                for x in o.values_mut() {
                    self.walk(x, r)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// For logs: held keys and secret shapes replaced.
    pub fn redact_for_log(&self, text: &str) -> String {
        let mut out = text.to_string();
        for f in &self.finders {
            let needle = String::from_utf8_lossy(f.needle()).into_owned();
            if out.contains(&needle) {
                out = out.replace(&needle, "[REDACTED CREDENTIAL]");
            }
        }
        redact_shapes(&out, &mut Redactions::default()).unwrap_or(out)
    }

    /// Replaces held keys in a response body (an upstream error that echoes the key).
    pub fn scrub_bytes(&self, body: bytes::Bytes) -> bytes::Bytes {
        if !self.holds_key_in(&body) {
            return body;
        }
        bytes::Bytes::from(self.redact_for_log(&String::from_utf8_lossy(&body)))
    }
}

/// `Some(new)` when `s` contained a secret shape.
fn redact_shapes(s: &str, r: &mut Redactions) -> Option<String> {
    let re = shapes();
    if !re.is_match(s) {
        return None;
    }
    let mut changed = false;
    let out = re.replace_all(s, |c: &regex::Captures<'_>| {
        let m = c.get(0).map_or("", |m| m.as_str());
        if c.name("pem").is_some() {
            r.private_keys += 1;
            changed = true;
            "[REDACTED PRIVATE KEY]".to_string()
        } else if looks_like_secret(m) || m.to_ascii_lowercase().starts_with("aws_secret") {
            r.access_keys += 1;
            changed = true;
            "[REDACTED ACCESS KEY]".to_string()
        } else {
            m.to_string()
        }
    });
    changed.then(|| out.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn secret_guard_denies_held_keys_and_redacts_shapes() {
        let held = [Secret::new("canary-key-0123456789")];
        let g = SecretGuard::new(held.iter());
        let mut b = body(
            json!({"messages":[{"role":"user","content":"use canary-key-0123456789 please"}]}),
        );
        assert!(g
            .check(&mut b)
            .unwrap_err()
            .to_string()
            .contains("credential"));
        let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
        let mut b = body(
            json!({"messages":[{"role":"user","content":format!("key: {pem} and AKIAIOSFODNN7EXAMPLE ok")}]}),
        );
        let r = g.check(&mut b).unwrap();
        assert_eq!(
            r,
            Redactions {
                private_keys: 1,
                access_keys: 1
            }
        );
        let text = b["messages"][0]["content"].as_str().unwrap();
        assert_eq!(
            text,
            "key: [REDACTED PRIVATE KEY] and [REDACTED ACCESS KEY] ok"
        );
        let mut b = body(
            json!({"messages":[{"role":"user","content":"commit 3f2a9c0e1b and the word skeleton"}]}),
        );
        assert!(!g.check(&mut b).unwrap().any());
        assert_eq!(
            g.redact_for_log("x canary-key-0123456789 y"),
            "x [REDACTED CREDENTIAL] y"
        );
    }

    fn guard(src: &str) -> Guards {
        Guards::compile(vec![(PathBuf::from("g.rhai"), src.to_string(), true)]).unwrap()
    }

    #[test]
    fn scripts_allow_deny_rewrite() {
        let mut b = body(
            json!({"model":"m","messages":[{"role":"user","content":"mail bob@example.com now"}]}),
        );
        assert_eq!(guard("allow()").on_request("chat", "m", &mut b), Ok(vec![]));
        assert_eq!(guard("").on_request("chat", "m", &mut b), Ok(vec![]));
        let deny = guard(r#"if prompt.contains("bob@") { deny("no emails") } else { allow() }"#);
        assert_eq!(
            deny.on_request("chat", "m", &mut b),
            Err(("g.rhai".into(), "no emails".into()))
        );
        let redact = guard(
            r#"for i in 0..request.messages.len() {
                   request.messages[i].content = regex_replace(request.messages[i].content, "[\\w.+-]+@[\\w-]+\\.[\\w.]+", "[email]");
               }
               rewrite(request)"#,
        );
        assert_eq!(
            redact.on_request("chat", "m", &mut b),
            Ok(vec!["g.rhai".into()])
        );
        assert_eq!(b["messages"][0]["content"], "mail [email] now");
    }

    #[test]
    fn runaway_and_broken_scripts_fail_closed() {
        let mut b = body(json!({"model":"m","messages":[]}));
        let (_, why) = guard("loop { }")
            .on_request("chat", "m", &mut b)
            .unwrap_err();
        assert!(why.contains("guard failed"), "{why}");
        let (_, why) = guard("42").on_request("chat", "m", &mut b).unwrap_err();
        assert!(why.contains("allow()"), "{why}");
        assert!(Guards::compile(vec![(PathBuf::from("x.rhai"), "let = ;".into(), false)]).is_err());
    }

    #[test]
    fn typical_guard_is_fast() {
        let g = guard(
            r#"if regex_match(prompt, "(?i)ignore (all )?previous instructions") { return deny("prompt injection"); }
               allow()"#,
        );
        let mut b = body(json!({"model":"m","messages":[
            {"role":"system","content":"You are a helpful assistant."},
            {"role":"user","content":"Summarise the attached design notes in three bullet points, please."}]}));
        for _ in 0..50 {
            g.on_request("chat", "m", &mut b).unwrap();
        }
        let n = 500;
        let t = Instant::now();
        for _ in 0..n {
            g.on_request("chat", "m", &mut b).unwrap();
        }
        let per = t.elapsed() / n;
        // The 50 µs goal is for release builds (the bench measures it); debug is ~10x slower.
        let budget = if cfg!(debug_assertions) {
            Duration::from_micros(1000)
        } else {
            Duration::from_micros(50)
        };
        assert!(per < budget, "typical guard took {per:?}");
    }
}
