//! Semantic validation of one blueprint: everything the types cannot say.
//!
//! Pure: it reads nothing from disk and nothing of the host, so `validate` gives the same answer
//! on a CI runner as on the target. Each finding names the field path it is about; the caller
//! turns paths into `file:line:col` with the file's [`SourceMap`](super::source_map::SourceMap).
//! Checks that need files of the source (migration scripts, guard scripts, plugins, presets)
//! live in [`super::set`], which passes what it found in through [`Context`].

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use super::credential::{env_entry_is_secret, CredentialRef};
use super::diag::did_you_mean;
use super::domain::{check_port, parse_rule};
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
struct Findings(Vec<Finding>);

impl Findings {
    fn err(
        &mut self,
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Finding {
        self.0.push(Finding {
            code,
            path: path.into(),
            message: message.into(),
            hint: None,
            at_key: false,
            warning: false,
            secret: false,
        });
        self.0.last_mut().expect("just pushed")
    }
}

impl Finding {
    fn hint(&mut self, h: impl Into<String>) -> &mut Self {
        self.hint = Some(h.into());
        self
    }
    fn warn(&mut self) -> &mut Self {
        self.warning = true;
        self
    }
    fn secret(&mut self) -> &mut Self {
        self.secret = true;
        self
    }
    fn key(&mut self) -> &mut Self {
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
        check_inference(inf, &mut f);
    }
    check_network(&bp.network, ctx, &mut f);
    check_filesystem(&bp.filesystem, &mut f);
    check_resources(&bp.resources, &mut f);
    check_lifecycle(&bp.lifecycle, &mut f);
    check_sandbox(&bp.sandbox, &mut f);
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

/// Checks a sandbox name: a DNS label.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        let suggestion: String = name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .chars()
            .take(63)
            .collect();
        let mut msg = format!("`{name}` is not a valid name: use a DNS label (lower-case letters, digits and `-`, at most 63 characters, not starting or ending with `-`)");
        if !suggestion.is_empty() && suggestion != name {
            msg.push_str(&format!(", e.g. `{suggestion}`"));
        }
        Err(msg)
    }
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
    let kind = a.kind.as_deref().unwrap_or(ctx.default_agent_type);
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

fn check_credential(c: &CredentialRef, path: &str, f: &mut Findings) {
    if let Err(m) = c.check() {
        let e = f.err("secret.inline", path, m);
        if matches!(c, CredentialRef::Inline(_)) {
            e.secret();
        } else {
            e.code = "credential.reference";
        }
    }
}

/// Whether an allowed-model entry (exact, or prefix with `*`) is served by a route pattern.
fn route_matches(pattern: &str, model: &str) -> bool {
    let (m_prefix, m_is_prefix) = match model.strip_suffix('*') {
        Some(p) => (p, true),
        None => (model, false),
    };
    let p_prefix = pattern.strip_suffix('*').unwrap_or(pattern);
    let pattern_is_prefix = pattern.ends_with('*') || pattern.ends_with('/');
    if pattern_is_prefix {
        m_prefix.starts_with(p_prefix)
    } else {
        !m_is_prefix && m_prefix == pattern
    }
}

fn check_inference(inf: &Inference, f: &mut Findings) {
    if inf.backends.is_empty() {
        f.err(
            "inference.no-backend",
            "inference.backends",
            "no backends: the agent could not reach any model",
        )
        .hint("add a backend (kind: openai, anthropic or mock), or remove the inference section");
    }
    let mut names = HashSet::new();
    for (i, b) in inf.backends.iter().enumerate() {
        let path = format!("inference.backends[{i}]");
        if let Err(m) = check_name(&b.name) {
            f.err("inference.backend-name", format!("{path}.name"), m);
        }
        if !names.insert(b.name.as_str()) {
            f.err(
                "inference.backend-duplicate",
                format!("{path}.name"),
                format!("backend `{}` is defined twice", b.name),
            );
        }
        match (&b.kind, &b.url) {
            (BackendKind::Mock, Some(_)) => {
                f.err(
                    "inference.backend-url",
                    format!("{path}.url"),
                    "the mock backend has no URL",
                )
                .warn()
                .hint("remove `url`, or use kind: openai for a real server");
            }
            (BackendKind::Openai | BackendKind::Anthropic, None) => {
                f.err(
                    "inference.backend-url",
                    path.clone(),
                    format!("backend `{}` needs a `url`", b.name),
                )
                .hint("e.g. url: https://integrate.api.nvidia.com/v1");
            }
            (_, Some(u)) => check_url(u, &format!("{path}.url"), f),
            _ => {}
        }
        if b.mock.is_some() && b.kind != BackendKind::Mock {
            f.err(
                "inference.mock-settings",
                format!("{path}.mock"),
                "`mock` settings only apply to kind: mock",
            )
            .key();
        }
        if let Some(k) = &b.api_key {
            check_credential(k, &format!("{path}.apiKey"), f);
        }
        if b.timeout.is_some_and(|t| t.as_duration().is_zero()) {
            f.err(
                "inference.timeout",
                format!("{path}.timeout"),
                "timeout must be more than zero",
            );
        }
    }
    for (i, r) in inf.routes.iter().enumerate() {
        let path = format!("inference.routes[{i}]");
        if r.pattern.trim().is_empty() || (r.pattern == "*" && i + 1 < inf.routes.len()) {
            f.err(
                "inference.route",
                format!("{path}.match"),
                "a route needs a model name or prefix (a catch-all `*` must come last)",
            );
        }
        if r.backends.is_empty() {
            f.err(
                "inference.route",
                format!("{path}.backends"),
                "a route needs at least one backend",
            );
        }
        for (j, b) in r.backends.iter().enumerate() {
            if !names.contains(b.as_str()) {
                let e = f.err(
                    "inference.unknown-backend",
                    format!("{path}.backends[{j}]"),
                    format!("route names backend `{b}`, which is not defined"),
                );
                match did_you_mean(b, inf.backends.iter().map(|b| b.name.as_str())) {
                    Some(s) => e.hint(format!("did you mean `{s}`?")),
                    None => e.hint("define it under inference.backends"),
                };
            }
        }
    }
    if inf.allowed_models.is_empty() {
        f.err(
            "inference.no-models",
            "inference.allowedModels",
            "allowedModels is empty: every request would be refused",
        )
        .hint("list the models the agent may call, e.g. [mock-1] or [nim/*]");
    }
    for (i, m) in inf.allowed_models.iter().enumerate() {
        let path = format!("inference.allowedModels[{i}]");
        if m.trim().is_empty() || m == "*" {
            f.err(
                "inference.model",
                &path,
                "name a model or a prefix such as `nim/*`; `*` alone would allow any model",
            );
            continue;
        }
        if m[..m.len() - 1].contains('*') {
            f.err(
                "inference.model",
                &path,
                format!("`{m}`: `*` is only allowed at the end, as a prefix"),
            );
            continue;
        }
        let routed = inf.routes.iter().any(|r| route_matches(&r.pattern, m))
            || (inf.routes.is_empty() && inf.backends.len() == 1);
        if !routed {
            let hint = if inf.routes.is_empty() {
                format!(
                    "with {} backends, add a route: routes: [{{match: \"{m}\", backends: [NAME]}}]",
                    inf.backends.len()
                )
            } else {
                "add a route whose `match` covers it".to_string()
            };
            f.err(
                "inference.model-unrouted",
                &path,
                format!("model `{m}` matches no route, so no backend would serve it"),
            )
            .hint(hint);
        }
    }
    let l = &inf.limits;
    for (v, field) in [
        (l.max_tokens.map(u64::from), "maxTokens"),
        (l.requests_per_minute.map(u64::from), "requestsPerMinute"),
        (l.tokens_per_minute, "tokensPerMinute"),
        (l.tokens_per_day, "tokensPerDay"),
        (l.max_choices.map(u64::from), "maxChoices"),
    ] {
        if v == Some(0) {
            f.err(
                "inference.limit",
                format!("inference.limits.{field}"),
                format!("{field}: 0 would refuse every request"),
            )
            .hint("remove the field for no limit, or give a positive number");
        }
    }
    if let Some(t) = &l.temperature {
        if !(t.min.is_finite() && t.max.is_finite()) || t.min < 0.0 || t.max > 2.0 || t.min > t.max
        {
            f.err(
                "inference.temperature-range",
                "inference.limits.temperature",
                format!(
                    "temperature range {}..{} is not an ordered range within 0..2",
                    t.min, t.max
                ),
            )
            .hint("write min <= max, both between 0 and 2, e.g. {min: 0, max: 1}");
        }
    }
}

fn check_url(u: &str, path: &str, f: &mut Findings) {
    let Some((scheme, rest)) = u.split_once("://") else {
        f.err("inference.backend-url", path, format!("`{u}` is not a URL"))
            .hint("write e.g. https://integrate.api.nvidia.com/v1");
        return;
    };
    if scheme != "http" && scheme != "https" {
        f.err(
            "inference.backend-url",
            path,
            format!("URL scheme `{scheme}` is not http or https"),
        );
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        f.err(
            "secret.inline",
            path,
            "the URL carries credentials (user:password@)",
        )
        .secret()
        .hint("remove them and set the backend's apiKey: {env: VARIABLE}");
    } else if authority.is_empty() {
        f.err("inference.backend-url", path, format!("`{u}` has no host"));
    }
    if let Some((_, q)) = rest.split_once('?') {
        if q.split('&').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            env_entry_is_secret(k, v) || k.eq_ignore_ascii_case("key")
        }) {
            f.err(
                "secret.inline",
                path,
                "the URL carries a key in its query string",
            )
            .secret()
            .hint("set the backend's apiKey: {env: VARIABLE} instead");
        }
    }
}

/// Parses a CIDR (`198.18.0.0/15`, `10.1.2.3`, `fd00::/8`).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an IP address or CIDR range (e.g. 198.18.0.0/15)"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => l
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| format!("`{s}`: prefix length must be 0 to {max}"))?,
    };
    if len == 0 {
        return Err(format!(
            "`{s}` allows every address: name the ranges the agent needs"
        ));
    }
    Ok((ip, len))
}

fn check_network(n: &Network, ctx: &Context<'_>, f: &mut Findings) {
    let mut seen = HashSet::new();
    for (i, d) in n.egress.allowed_domains.iter().enumerate() {
        let path = format!("network.egress.allowedDomains[{i}]");
        match parse_rule(d) {
            Ok(spec) => {
                if !seen.insert(spec.clone()) {
                    f.err(
                        "network.duplicate-domain",
                        &path,
                        format!("`{spec}` is listed twice"),
                    )
                    .warn();
                }
            }
            Err(m) => {
                f.err("network.domain", &path, m);
            }
        }
    }
    for (i, &p) in n.egress.blocked_ports.iter().enumerate() {
        if let Err(m) = check_port(p) {
            f.err(
                "network.port",
                format!("network.egress.blockedPorts[{i}]"),
                m,
            );
        }
    }
    for (i, p) in n.egress.presets.iter().enumerate() {
        if !ctx.presets.contains(p) {
            let e = f.err(
                "network.unknown-preset",
                format!("network.egress.presets[{i}]"),
                format!("unknown preset `{p}`"),
            );
            match did_you_mean(p, ctx.presets.iter().map(String::as_str)) {
                Some(s) => e.hint(format!("did you mean `{s}`?")),
                None => e.hint(format!("`nemoclaw presets list` shows the built-ins; define your own in presets/{p}.yaml beside the blueprints")),
            };
        }
    }
    for (i, a) in n.egress.allow_addresses.iter().enumerate() {
        if let Err(m) = parse_cidr(a) {
            f.err(
                "network.cidr",
                format!("network.egress.allowAddresses[{i}]"),
                m,
            );
        }
    }
    let mut host_ports = HashSet::new();
    for (i, ing) in n.ingress.iter().enumerate() {
        let path = format!("network.ingress[{i}]");
        if let Err(m) = check_port(ing.host_port) {
            f.err("network.port", format!("{path}.hostPort"), m);
        } else if !host_ports.insert(ing.host_port) {
            f.err(
                "network.ingress-duplicate",
                format!("{path}.hostPort"),
                format!("host port {} is forwarded twice", ing.host_port),
            );
        }
        if let Err(m) = check_port(ing.port) {
            f.err("network.port", format!("{path}.port"), m);
        }
    }
}

/// Whether a host path lexically points into a nemoclaw home.
fn points_into_home(host: &str) -> bool {
    host.split('/').any(|c| c == ".nemoclaw")
        || std::env::var("NEMOCLAW_HOME")
            .ok()
            .filter(|h| !h.is_empty())
            .is_some_and(|h| {
                let h = h.trim_end_matches('/');
                host == h || host.starts_with(&format!("{h}/"))
            })
}

fn clean_abs(p: &str) -> bool {
    p.starts_with('/') && !p.split('/').any(|c| c == ".." || c == ".")
}

fn check_filesystem(fs: &Filesystem, f: &mut Findings) {
    if let Some(r) = &fs.rootfs {
        if !clean_abs(r) {
            f.err(
                "filesystem.path",
                "filesystem.rootfs",
                format!("rootfs `{r}` must be an absolute path without `..`"),
            );
        }
    }
    let mut targets = HashSet::new();
    for (i, m) in fs.mounts.iter().enumerate() {
        let path = format!("filesystem.mounts[{i}]");
        let host_ok =
            clean_abs(&m.host) || m.host.starts_with("~/") && !m.host.split('/').any(|c| c == "..");
        if !host_ok {
            f.err(
                "filesystem.path",
                format!("{path}.host"),
                format!(
                    "host path `{}` must be absolute (or start with ~/) and contain no `..`",
                    m.host
                ),
            );
        } else if points_into_home(&m.host) {
            f.err("filesystem.mount-into-home", format!("{path}.host"), format!("`{}` is inside the nemoclaw home, which holds credentials and other sandboxes' state", m.host))
                .hint("mount a directory outside ~/.nemoclaw; the agent's own state is already at /workspace/state");
        }
        let target = m.path.trim_end_matches('/');
        let target = if target.is_empty() { "/" } else { target };
        if !clean_abs(&m.path) {
            f.err(
                "filesystem.path",
                format!("{path}.path"),
                format!(
                    "sandbox path `{}` must be absolute and contain no `..`",
                    m.path
                ),
            );
        } else if RESERVED_SANDBOX_PATHS.contains(&target)
            || target.starts_with("/proc/")
            || target.starts_with("/dev/")
            || target.starts_with("/sys/")
        {
            f.err(
                "filesystem.reserved-path",
                format!("{path}.path"),
                format!(
                    "`{}` is provided by nemoclaw and cannot be mounted over",
                    m.path
                ),
            )
            .hint("mount under /workspace/ or /mnt/, e.g. /workspace/data");
        } else if !targets.insert(target.to_string()) {
            f.err(
                "filesystem.duplicate-mount",
                format!("{path}.path"),
                format!("two mounts target `{}`", m.path),
            );
        }
    }
}

fn check_resources(r: &Resources, f: &mut Findings) {
    if r.pids == Some(0) {
        f.err(
            "resources.pids",
            "resources.pids",
            "pids: 0 would not even let the agent start",
        )
        .hint("give at least 8, or remove it for the default 512");
    }
    if let Some(m) = r.memory {
        if m.bytes() < 8 << 20 {
            f.err(
                "resources.memory",
                "resources.memory",
                format!("memory {m} is below 8Mi, too little for any agent to start"),
            )
            .hint("give at least 64Mi; agents such as OpenClaw need about 2Gi");
        }
    }
    if let Some(d) = r.disk {
        if d.bytes() < 1 << 20 {
            f.err(
                "resources.disk",
                "resources.disk",
                format!("disk cap {d} is below 1Mi"),
            );
        }
    }
    match &r.gpu {
        Some(Gpu::Count(0)) => {
            f.err("resources.gpu", "resources.gpu", "gpu: 0 asks for no GPU")
                .warn()
                .hint("remove the field instead");
        }
        Some(Gpu::Devices(list)) => {
            if list.is_empty() {
                f.err(
                    "resources.gpu",
                    "resources.gpu",
                    "an empty device list asks for no GPU",
                )
                .warn();
            }
            let mut seen = HashSet::new();
            for (i, d) in list.iter().enumerate() {
                if let GpuDevice::Uuid(u) = d {
                    if !u.starts_with("GPU-") && !u.starts_with("MIG-") {
                        f.err(
                            "resources.gpu",
                            format!("resources.gpu[{i}]"),
                            format!("`{u}` is neither a device index nor a GPU-/MIG- UUID"),
                        );
                    }
                }
                if !seen.insert(d) {
                    f.err(
                        "resources.gpu",
                        format!("resources.gpu[{i}]"),
                        "device listed twice",
                    );
                }
            }
        }
        _ => {}
    }
}

fn check_lifecycle(l: &Lifecycle, f: &mut Findings) {
    if let Some(h) = &l.health_check {
        let p = "lifecycle.healthCheck";
        match (&h.exec, &h.http) {
            (None, None) | (Some(_), Some(_)) => {
                f.err(
                    "lifecycle.health-check",
                    p,
                    "a health check has exactly one of `exec` or `http`",
                );
            }
            (Some(cmd), None) if cmd.is_empty() || cmd[0].trim().is_empty() => {
                f.err(
                    "lifecycle.health-check",
                    format!("{p}.exec"),
                    "exec needs a command, e.g. [/bin/sh, -c, \"test -f /workspace/state/ready\"]",
                );
            }
            (None, Some(http)) => {
                if let Err(m) = check_port(http.port) {
                    f.err("network.port", format!("{p}.http.port"), m);
                }
                if !http.path.starts_with('/') {
                    f.err(
                        "lifecycle.health-check",
                        format!("{p}.http.path"),
                        "the path must start with `/`",
                    );
                }
            }
            _ => {}
        }
        if h.retries == Some(0) {
            f.err(
                "lifecycle.health-check",
                format!("{p}.retries"),
                "retries must be at least 1",
            );
        }
        if let (Some(i), Some(t)) = (h.interval, h.timeout) {
            if t > i {
                f.err(
                    "lifecycle.health-check",
                    format!("{p}.timeout"),
                    format!("timeout {t} is longer than the interval {i}"),
                )
                .warn();
            }
        }
        if h.interval.is_some_and(|i| i.as_duration().is_zero()) {
            f.err(
                "lifecycle.health-check",
                format!("{p}.interval"),
                "interval must be more than zero",
            );
        }
    }
    if l.max_restarts == Some(0) && l.restart != RestartPolicy::Never {
        f.err(
            "lifecycle.restart",
            "lifecycle.maxRestarts",
            "maxRestarts: 0 never restarts; say `restart: never` instead",
        )
        .warn();
    }
}

fn check_sandbox(s: &SandboxSettings, f: &mut Findings) {
    for (i, name) in s.seccomp.deny.iter().enumerate() {
        if crate::sandbox::syscalls::number(name).is_none() {
            let e = f.err(
                "sandbox.syscall",
                format!("sandbox.seccomp.deny[{i}]"),
                format!("unknown syscall `{name}`"),
            );
            if let Some(s) = did_you_mean(name, crate::sandbox::syscalls::names()) {
                e.hint(format!("did you mean `{s}`?"));
            }
        }
    }
    if let Some(t) = s.tmp_size {
        if t.bytes() < 1 << 20 {
            f.err(
                "sandbox.tmp-size",
                "sandbox.tmpSize",
                format!("tmpSize {t} is below 1Mi"),
            );
        }
    }
    if let Some(n) = s.nofile {
        if !(16..=1 << 20).contains(&n) {
            f.err(
                "sandbox.nofile",
                "sandbox.nofile",
                format!("nofile {n} must be between 16 and 1048576"),
            );
        }
    }
    for (v, field) in [(s.uid, "uid"), (s.gid, "gid")] {
        match v {
            Some(0) => {
                f.err(
                    "sandbox.root",
                    format!("sandbox.{field}"),
                    format!("{field} 0 is root: the agent always runs unprivileged"),
                )
                .hint("remove it for the default 1000");
            }
            Some(n) if n >= 65536 => {
                f.err(
                    "sandbox.id-range",
                    format!("sandbox.{field}"),
                    format!("{field} {n} is outside the sandbox's 65536 ids"),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_matching() {
        assert!(route_matches("nim/", "nim/meta/llama-3.1-8b-instruct"));
        assert!(route_matches("nim/", "nim/*"));
        assert!(route_matches("gpt-*", "gpt-4o"));
        assert!(route_matches("mock-1", "mock-1"));
        assert!(!route_matches("mock-1", "mock-2"));
        assert!(!route_matches("mock-1", "mock-*"));
        assert!(!route_matches("nim/", "openai/gpt"));
    }

    #[test]
    fn names() {
        assert!(check_name("quickstart").is_ok());
        assert!(check_name("a-1").is_ok());
        let e = check_name("My_Agent").unwrap_err();
        assert!(e.contains("`my-agent`"), "{e}");
        assert!(check_name("-x").is_err());
        assert!(check_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("198.18.0.0/15").unwrap().1, 15);
        assert_eq!(parse_cidr("10.0.0.1").unwrap().1, 32);
        assert!(parse_cidr("0.0.0.0/0").is_err());
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("example.com").is_err());
    }
}
