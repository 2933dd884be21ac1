//! Egress presets: named, maintained domain lists shipped with nemoclaw, so blueprints write
//! `presets: [github, npm]` instead of hand-copying domains. Entries use the same syntax as
//! `network.egress.allowedDomains`.

/// `(name, description, domains)` for every built-in preset.
pub const BUILTIN: &[(&str, &str, &[&str])] = &[
    (
        "github",
        "GitHub: web, API, raw content, release downloads, git over HTTPS",
        &[
            "github.com",
            "api.github.com",
            "codeload.github.com",
            "*.githubusercontent.com",
            "uploads.github.com",
        ],
    ),
    (
        "npm",
        "the npm registry",
        &["registry.npmjs.org", "registry.yarnpkg.com"],
    ),
    (
        "pypi",
        "the Python Package Index",
        &["pypi.org", "files.pythonhosted.org"],
    ),
    (
        "crates",
        "crates.io (Rust)",
        &["crates.io", "index.crates.io", "static.crates.io"],
    ),
    (
        "huggingface",
        "Hugging Face Hub: models, datasets and their CDN",
        &["huggingface.co", "*.huggingface.co", "*.hf.co"],
    ),
    (
        "slack",
        "Slack API, webhooks and files",
        &["slack.com", "*.slack.com", "*.slack-edge.com"],
    ),
    ("telegram", "Telegram Bot API", &["api.telegram.org"]),
    (
        "discord",
        "Discord API, gateway and CDN",
        &[
            "discord.com",
            "*.discord.com",
            "gateway.discord.gg",
            "cdn.discordapp.com",
            "media.discordapp.net",
        ],
    ),
    (
        "nvidia",
        "NVIDIA API catalog and NIM endpoints",
        &[
            "integrate.api.nvidia.com",
            "build.nvidia.com",
            "api.nvcf.nvidia.com",
            "nvcr.io",
        ],
    ),
    ("openai", "OpenAI API", &["api.openai.com"]),
    ("anthropic", "Anthropic API", &["api.anthropic.com"]),
    (
        "debian",
        "Debian package mirrors",
        &["deb.debian.org", "security.debian.org"],
    ),
];

/// The domains of a built-in preset.
pub fn builtin(name: &str) -> Option<&'static [&'static str]> {
    BUILTIN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, d)| *d)
}

/// Names of the built-in presets.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::domain::parse_rule;
    use crate::blueprint::types::DomainRule;

    #[test]
    fn every_builtin_entry_is_a_valid_rule() {
        for (name, _, domains) in BUILTIN {
            assert!(!domains.is_empty(), "{name}");
            for d in *domains {
                parse_rule(&DomainRule::Name((*d).into()))
                    .unwrap_or_else(|e| panic!("{name}: {d}: {e}"));
            }
        }
    }
}
