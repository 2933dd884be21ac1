//! Credential references and the detector for secrets written inline.
//!
//! A blueprint never holds a secret. It names where the secret lives: an environment variable
//! of the nemoclaw process that applies it (`{env: NVIDIA_API_KEY}`) or a 0600 file under the
//! home's `credentials/` directory (`{file: nvidia}`). The same detector that refuses inline
//! secrets in blueprints backs the gateway's built-in guard, so both agree on what a secret looks
//! like.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a credential comes from: `{env: NAME}` or `{file: NAME}`.
///
/// A plain string in the blueprint deserialises to [`CredentialRef::Inline`] so that validation
/// can refuse it with a precise message; the inline value is never shown or serialised.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum CredentialRef {
    /// Name of an environment variable of the nemoclaw process that applies or starts the
    /// sandbox, e.g. `NVIDIA_API_KEY`.
    Env(String),
    /// Name of a file under `$NEMOCLAW_HOME/credentials/` (mode 0600), e.g. `nvidia`.
    File(String),
    /// A value written inline. Always a validation error; kept only to report it.
    Inline(Redacted),
}

/// A string that never prints or serialises its content.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Redacted(String);

impl Redacted {
    pub fn looks_like_secret(&self) -> bool {
        looks_like_secret(&self.0)
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for CredentialRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialRef::Env(n) => write!(f, "{{env: {n}}}"),
            CredentialRef::File(n) => write!(f, "{{file: {n}}}"),
            CredentialRef::Inline(_) => f.write_str("<inline value redacted>"),
        }
    }
}

impl Serialize for CredentialRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self {
            CredentialRef::Env(n) => m.serialize_entry("env", n)?,
            CredentialRef::File(n) => m.serialize_entry("file", n)?,
            CredentialRef::Inline(_) => m.serialize_entry("inline", "<redacted>")?,
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for CredentialRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CredentialRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a credential reference {env: VARIABLE} or {file: NAME}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CredentialRef, E> {
                Ok(CredentialRef::Inline(Redacted(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CredentialRef, E> {
                Ok(CredentialRef::Inline(Redacted(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CredentialRef, E> {
                Ok(CredentialRef::Inline(Redacted(v.to_string())))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CredentialRef, A::Error> {
                let mut found: Option<CredentialRef> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    let r = match key.as_str() {
                        "env" => CredentialRef::Env(value),
                        "file" => CredentialRef::File(value),
                        other => return Err(de::Error::unknown_field(other, &["env", "file"])),
                    };
                    if found.is_some() {
                        return Err(de::Error::custom(
                            "a credential reference names exactly one of `env` or `file`",
                        ));
                    }
                    found = Some(r);
                }
                found.ok_or_else(|| {
                    de::Error::custom(
                        "empty credential reference: write {env: VARIABLE} or {file: NAME}",
                    )
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for CredentialRef {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("CredentialRef")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Where a credential comes from: an environment variable of the nemoclaw process ({env: NVIDIA_API_KEY}) or a 0600 file under $NEMOCLAW_HOME/credentials/ ({file: nvidia}). Never the secret itself.",
            "oneOf": [
                {"type": "object", "properties": {"env": {"type": "string", "pattern": "^[A-Z_][A-Z0-9_]*$"}}, "required": ["env"], "additionalProperties": false},
                {"type": "object", "properties": {"file": {"type": "string", "pattern": "^[A-Za-z0-9._-]+$"}}, "required": ["file"], "additionalProperties": false}
            ]
        })
    }
}

/// Why a credential reference is refused. No variant carries a value that looks like a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("a secret is written inline: move it to an environment variable or to $NEMOCLAW_HOME/credentials/NAME (mode 0600) and write {{env: VARIABLE}} or {{file: NAME}}")]
    InlineSecret,
    #[error("credentials are referenced, never written inline: write {{env: VARIABLE}} or {{file: NAME}}")]
    Inline,
    #[error("this looks like the secret itself: name the environment variable that holds it, e.g. {{env: NVIDIA_API_KEY}}")]
    SecretAsEnvName,
    #[error("`{0}` is not an environment variable name: use upper-case letters, digits and `_`, e.g. NVIDIA_API_KEY")]
    BadEnvName(String),
    #[error("this looks like the secret itself: name a file under the home's credentials/ directory, e.g. {{file: nvidia}}")]
    SecretAsFileName,
    #[error("`{0}` is not a credentials file name: use a plain name (letters, digits, `.`, `_`, `-`) of a file in $NEMOCLAW_HOME/credentials/")]
    BadFileName(String),
}

impl CredentialRef {
    /// Checks the reference's own syntax.
    pub fn check_syntax(&self) -> Result<(), ReferenceError> {
        match self {
            CredentialRef::Inline(v) if v.looks_like_secret() => Err(ReferenceError::InlineSecret),
            CredentialRef::Inline(_) => Err(ReferenceError::Inline),
            CredentialRef::Env(name) if is_env_var_name(name) => Ok(()),
            CredentialRef::Env(name) if looks_like_secret(name) => {
                Err(ReferenceError::SecretAsEnvName)
            }
            CredentialRef::Env(name) => Err(ReferenceError::BadEnvName(name.clone())),
            CredentialRef::File(name) if is_credentials_file_name(name) => Ok(()),
            CredentialRef::File(name) if looks_like_secret(name) => {
                Err(ReferenceError::SecretAsFileName)
            }
            CredentialRef::File(name) => Err(ReferenceError::BadFileName(name.clone())),
        }
    }
    /// A human description that never includes a secret: `env NVIDIA_API_KEY`.
    pub fn describe(&self) -> String {
        match self {
            CredentialRef::Env(n) => format!("environment variable {n}"),
            CredentialRef::File(n) => format!("credentials file {n}"),
            CredentialRef::Inline(_) => "an inline value".into(),
        }
    }
}

/// `NVIDIA_API_KEY`: upper-case letters, digits and `_`, not starting with a digit.
fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// A plain file name (letters, digits, `.`, `_`, `-`; not `.` or `..`) of at most 128 bytes.
fn is_credentials_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Well-known prefixes of API keys and tokens.
const SECRET_PREFIXES: &[&str] = &[
    "sk-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "nvapi-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xapp-",
    "hf_",
    "AKIA",
    "ASIA",
    "AIza",
    "ya29.",
    "pk_live_",
    "SG.",
    "npm_",
    "pypi-",
];

/// Returns true when `value` has the shape of a credential: a known key prefix followed by a
/// long token, a PEM private key, or a long high-entropy token.
pub fn looks_like_secret(value: &str) -> bool {
    let v = value.trim();
    if v.contains("-----BEGIN") && v.contains("PRIVATE KEY") {
        return true;
    }
    if v.len() < 16 || v.contains(char::is_whitespace) {
        return false;
    }
    if SECRET_PREFIXES.iter().any(|p| v.starts_with(p)) {
        return true;
    }
    is_high_entropy_token(v)
}

/// Returns true when an environment entry `name=value` carries a secret: either the value looks
/// like one, or the name says it is one (`..._TOKEN`, `..._API_KEY`, `PASSWORD`) and the value
/// is not an obvious placeholder.
pub fn env_entry_is_secret(name: &str, value: &str) -> bool {
    if looks_like_secret(value) {
        return true;
    }
    let upper = name.to_ascii_uppercase();
    let secret_name = [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "API_KEY",
        "APIKEY",
        "PRIVATE_KEY",
        "ACCESS_KEY",
    ]
    .iter()
    .any(|w| upper.contains(w));
    let v = value.trim();
    let placeholder = v.is_empty()
        || v.starts_with("${")
        || v.starts_with('<')
        || [
            "changeme",
            "placeholder",
            "none",
            "unused",
            "dummy",
            "test",
            "x",
        ]
        .contains(&v.to_ascii_lowercase().as_str());
    secret_name && !placeholder && v.len() >= 8
}

/// A long run of base64/hex-alphabet characters mixing letters and digits, with the entropy of
/// random bytes rather than of words or paths.
fn is_high_entropy_token(v: &str) -> bool {
    if v.len() < 32 || v.contains('/') && v.starts_with('/') || v.contains("://") {
        return false;
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+/=_-.".contains(c))
    {
        return false;
    }
    let has_digit = v.chars().any(|c| c.is_ascii_digit());
    let has_upper = v.chars().any(|c| c.is_ascii_uppercase());
    let has_lower = v.chars().any(|c| c.is_ascii_lowercase());
    if !(has_digit && (has_upper || has_lower)) {
        return false;
    }
    shannon_bits_per_char(v) >= 4.0
}

fn shannon_bits_per_char(v: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in v.bytes() {
        counts[b as usize] += 1;
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_shapes_are_secrets() {
        assert!(looks_like_secret("nvapi-AbCdEf0123456789abcdefGHIJ"));
        assert!(looks_like_secret("sk-proj-abcdefghijklmnop1234"));
        assert!(looks_like_secret(
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
        ));
        assert!(looks_like_secret("AKIAIOSFODNN7EXAMPLE"));
        assert!(looks_like_secret(
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----"
        ));
        assert!(looks_like_secret("q8Zr3LkP0vXw9Tn2Yb7Hc4Md1Fg6Js5A"));
    }

    #[test]
    fn ordinary_values_are_not() {
        assert!(!looks_like_secret("NVIDIA_API_KEY"));
        assert!(!looks_like_secret("https://integrate.api.nvidia.com/v1"));
        assert!(!looks_like_secret("/workspace/state/config.yaml"));
        assert!(!looks_like_secret("meta/llama-3.1-8b-instruct"));
        assert!(!looks_like_secret("info"));
        assert!(!looks_like_secret(
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        ));
    }

    #[test]
    fn env_entries() {
        assert!(env_entry_is_secret("GITHUB_TOKEN", "abcdefgh12345"));
        assert!(!env_entry_is_secret("GITHUB_TOKEN", "${GITHUB_TOKEN}"));
        assert!(!env_entry_is_secret("LOG_LEVEL", "debug"));
        assert!(env_entry_is_secret(
            "ANYTHING",
            "nvapi-AbCdEf0123456789abcdefGHIJ"
        ));
    }

    #[test]
    fn reference_syntax() {
        assert!(CredentialRef::Env("NVIDIA_API_KEY".into())
            .check_syntax()
            .is_ok());
        assert!(CredentialRef::Env("nvidia key".into())
            .check_syntax()
            .is_err());
        let e = CredentialRef::Env("nvapi-AbCdEf0123456789abcdefGHIJ".into())
            .check_syntax()
            .unwrap_err()
            .to_string();
        assert!(e.contains("looks like the secret"), "{e}");
        assert!(CredentialRef::File("nvidia".into()).check_syntax().is_ok());
        assert!(CredentialRef::File("../etc/shadow".into())
            .check_syntax()
            .is_err());
    }

    #[test]
    fn reference_errors_are_typed_and_never_hold_a_secret() {
        let secret = "nvapi-AbCdEf0123456789abcdefGHIJ";
        let inline = CredentialRef::Inline(Redacted(secret.into()));
        assert_eq!(inline.check_syntax(), Err(ReferenceError::InlineSecret));
        assert_eq!(
            CredentialRef::Inline(Redacted("x".into())).check_syntax(),
            Err(ReferenceError::Inline)
        );
        assert_eq!(
            CredentialRef::Env(secret.into()).check_syntax(),
            Err(ReferenceError::SecretAsEnvName)
        );
        assert_eq!(
            CredentialRef::File("sk-proj/abcdefghijklmnop1234".into()).check_syntax(),
            Err(ReferenceError::SecretAsFileName)
        );
        assert_eq!(
            CredentialRef::Env("1X".into()).check_syntax(),
            Err(ReferenceError::BadEnvName("1X".into()))
        );
        assert_eq!(
            CredentialRef::File("..".into()).check_syntax(),
            Err(ReferenceError::BadFileName("..".into()))
        );
        assert_eq!(
            CredentialRef::Inline(Redacted("x".into()))
                .check_syntax()
                .map_err(|e| e.to_string()),
            Err("credentials are referenced, never written inline: write {env: VARIABLE} or {file: NAME}".into())
        );
    }
}
