//! Semantic validation of one blueprint: everything the types cannot say.
//!
//! Pure: it reads nothing from disk and nothing of the host, so `validate` gives the same answer
//! on a CI runner as on the target. Each finding names the field path it is about; the caller
//! turns paths into `file:line:col` with the file's [`SourceMap`](super::source_map::SourceMap).
//! Checks that need files of the source (migration scripts, guard scripts, plugins, presets)
//! live in [`super::set`], which passes what it found in through [`Context`].

use std::collections::{BTreeSet, HashSet};
use std::fmt;

mod host;
mod inference;
mod network;

pub use network::{check_address_rule, AddressRuleError};

use super::credential::{env_entry_is_secret, CredentialRef};
use super::diag::did_you_mean;
use super::types::*;

/// What validation knows besides the blueprint itself.
pub struct Context<'a> {
    /// Agent types that exist: built-ins plus the source's plugins.
    pub agent_types: &'a BTreeSet<String>,
    /// Preset names that exist: built-ins plus the source's `presets/`.
    pub presets: &'a BTreeSet<String>,
    /// The agent type used when a blueprint names none (`hermes` for `nemohermes`).
    pub default_agent_type: &'a str,
}

/// One problem in a blueprint, located by field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub code: &'static str,
    /// Dotted path with indexes: `network.egress.blockedPorts[1]`.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
    /// Point at the key rather than the value.
    pub at_key: bool,
    pub warning: bool,
    /// The value is a secret: never echo the source line.
    pub secret: bool,
}

#[derive(Default)]
pub(super) struct Findings(Vec<Finding>);

impl Findings {
    fn err(
        &mut self,
        code: &'static str,
        path: impl Into<String>,
        message: impl fmt::Display,
    ) -> &mut Finding {
        self.0.push(Finding {
            code,
            path: path.into(),
            message: message.to_string(),
            hint: None,
            at_key: false,
            warning: false,
            secret: false,
        });
        self.0.last_mut().expect("just pushed")
    }
}

impl Finding {
    pub(super) fn hint(&mut self, h: impl Into<String>) -> &mut Self {
        self.hint = Some(h.into());
        self
    }
    pub(super) fn warn(&mut self) -> &mut Self {
        self.warning = true;
        self
    }
    pub(super) fn secret(&mut self) -> &mut Self {
        self.secret = true;
        self
    }
    pub(super) fn key(&mut self) -> &mut Self {
        self.at_key = true;
        self
    }
}

/// Environment variables nemoclaw sets for the agent; a blueprint may not override them.
pub const RESERVED_ENV: &[&str] = &[
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_KEY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "NEMOCLAW_STATE_DIR",
];

/// Paths inside the sandbox that nemoclaw itself provides; mounts may not cover them.
pub const RESERVED_SANDBOX_PATHS: &[&str] = &[
    "/",
    "/proc",
    "/dev",
    "/sys",
    "/etc",
    "/tmp",
    "/workspace/state",
    "/opt/nemoclaw",
    "/usr",
    "/bin",
    "/lib",
    "/lib64",
    "/sbin",
];

/// Runs every check on one blueprint.
pub fn check(bp: &Blueprint, ctx: &Context<'_>) -> Vec<Finding> {
    let mut f = Findings::default();
    check_header(bp, &mut f);
    check_agent(&bp.agent, ctx, &mut f);
    if let Some(inf) = &bp.inference {
        inference::check_inference(inf, &mut f);
    }
    network::check_network(&bp.network, ctx, &mut f);
    host::check_filesystem(&bp.filesystem, &mut f);
    host::check_resources(&bp.resources, &mut f);
    host::check_lifecycle(&bp.lifecycle, &mut f);
    if let Some(m) = &bp.migrations {
        host::check_migrations(m, &mut f);
    }
    host::check_sandbox(&bp.sandbox, &mut f);
    for (i, d) in bp.depends_on.iter().enumerate() {
        if d == &bp.metadata.name {
            f.err(
                "depends.cycle",
                format!("dependsOn[{i}]"),
                format!("`{d}` depends on itself"),
            )
            .hint("remove it from dependsOn");
        }
    }
    f.0
}

/// Why a sandbox or backend name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("`{name}` is not a valid name: use a DNS label (lower-case letters, digits and `-`, at most 63 characters, not starting or ending with `-`){}", for_example(.suggestion))]
    NotDnsLabel {
        name: String,
        /// A valid name close to it, when there is one.
        suggestion: Option<String>,
    },
}

fn for_example(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map_or_else(String::new, |s| format!(", e.g. `{s}`"))
}

/// Checks a sandbox name: a DNS label.
pub fn check_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        return Ok(());
    }
    Err(NameError::NotDnsLabel {
        name: name.to_string(),
        suggestion: dns_label_like(name).filter(|s| s != name),
    })
}

/// `name` lower-cased, other characters as `-`, trimmed to a DNS label; `None` if nothing is left.
fn dns_label_like(name: &str) -> Option<String> {
    let suggestion: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(63)
        .collect();
    (!suggestion.is_empty()).then_some(suggestion)
}

fn check_header(bp: &Blueprint, f: &mut Findings) {
    if let Err(m) = check_name(&bp.metadata.name) {
        f.err("metadata.name", "metadata.name", m);
    }
    if bp.metadata.version == 0 {
        f.err(
            "metadata.version",
            "metadata.version",
            "version must be 1 or more",
        )
        .hint("versions start at 1; raise it by one for each upgrade that needs a state migration");
    }
    for k in bp.metadata.labels.keys() {
        if k.is_empty()
            || k.len() > 63
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            f.err(
                "metadata.label",
                format!("metadata.labels.{k}"),
                format!("label key `{k}` must be 1-63 letters, digits, `-`, `_`, `.` or `/`"),
            )
            .key();
        }
    }
}

fn is_env_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_agent(a: &Agent, ctx: &Context<'_>, f: &mut Findings) {
    let kind = a.type_or(ctx.default_agent_type);
    if !ctx.agent_types.contains(kind) {
        let e = f.err(
            "agent.unknown-type",
            "agent.type",
            format!("unknown agent type `{kind}`"),
        );
        match did_you_mean(kind, ctx.agent_types.iter().map(String::as_str)) {
            Some(s) => e.hint(format!("did you mean `{s}`?")),
            None => {
                e.hint(format!(
                "use one of {} or add a plugin at plugins/{kind}/plugin.yaml beside the blueprints",
                ctx.agent_types.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            ))
            }
        };
    }
    if kind == "command" && a.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
        f.err(
            "agent.missing-command",
            "agent",
            "agent type `command` needs `agent.command`",
        )
        .hint("name the program to run, e.g. `command: /usr/bin/python3`");
    }
    if let Some(w) = &a.workdir {
        if !w.starts_with('/') {
            f.err(
                "agent.workdir",
                "agent.workdir",
                format!("workdir `{w}` must be an absolute path inside the sandbox"),
            );
        }
    }
    for (k, v) in &a.env {
        let path = format!("agent.env.{k}");
        if !is_env_name(k) {
            f.err(
                "agent.env-name",
                &path,
                format!("`{k}` is not an environment variable name"),
            )
            .key();
        }
        if RESERVED_ENV.contains(&k.as_str()) {
            f.err("agent.env-reserved", &path, format!("`{k}` is set by nemoclaw (the gateway's address or placeholder key)"))
                .key()
                .hint("remove it: the agent reaches models through inference.local and the web through the egress proxy");
        }
        if env_entry_is_secret(k, v) {
            f.err("secret.inline", &path, format!("`{k}` holds what looks like a secret, written inline"))
                .secret()
                .hint(format!("declare it in agent.secrets as {{name: {k}, from: {{env: {k}}}}} (it is read on the host at start), or let the gateway hold it"));
        }
    }
    let mut seen = HashSet::new();
    for (i, s) in a.secrets.iter().enumerate() {
        let path = format!("agent.secrets[{i}]");
        if !is_env_name(&s.name) {
            f.err(
                "agent.env-name",
                format!("{path}.name"),
                format!("`{}` is not an environment variable name", s.name),
            );
        }
        if !seen.insert(s.name.as_str()) || a.env.contains_key(&s.name) {
            f.err(
                "agent.secret-duplicate",
                format!("{path}.name"),
                format!(
                    "`{}` is defined twice (secrets and env share one namespace)",
                    s.name
                ),
            );
        }
        if RESERVED_ENV.contains(&s.name.as_str()) {
            f.err(
                "agent.env-reserved",
                format!("{path}.name"),
                format!("`{}` is set by nemoclaw", s.name),
            );
        }
        check_credential(&s.from, &format!("{path}.from"), f);
    }
}

pub(super) fn check_credential(c: &CredentialRef, path: &str, f: &mut Findings) {
    if let Err(m) = c.check_syntax() {
        let e = f.err("secret.inline", path, m);
        if matches!(c, CredentialRef::Inline(_)) {
            e.secret();
        } else {
            e.code = "credential.reference";
        }
    }
}

/// Whether an allowed-model entry (exact, or prefix with `*`) is served by a route pattern.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("quickstart").is_ok());
        assert!(check_name("a-1").is_ok());
        let e = check_name("My_Agent").unwrap_err().to_string();
        assert!(e.contains("`my-agent`"), "{e}");
        assert!(check_name("-x").is_err());
        assert!(check_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn a_bad_name_carries_its_suggestion() {
        assert_eq!(
            check_name("My_Agent"),
            Err(NameError::NotDnsLabel {
                name: "My_Agent".into(),
                suggestion: Some("my-agent".into())
            })
        );
        let e = check_name("--").unwrap_err();
        assert_eq!(
            e,
            NameError::NotDnsLabel {
                name: "--".into(),
                suggestion: None
            }
        );
        assert!(e.to_string().ends_with("or ending with `-`)"), "{e}");
    }
}
