//! Reading one YAML file into a typed document, with `file:line:col` diagnostics.
//!
//! The reader is defensive: files are size-capped before they are read, YAML is parsed with a
//! budget (aliases, nodes, depth, documents) so a billion-laughs file is refused in
//! microseconds, and every parse or type error is turned into a [`Diagnostic`] naming the exact
//! position, with a did-you-mean for misspelled fields.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Error as YamlError, Options};

use super::config::SourceConfig;
use super::diag::{did_you_mean, Diagnostic};
use super::source_map::SourceMap;
use super::types::{Blueprint, API_VERSION, KIND_BLUEPRINT};

/// Files larger than this are refused before they are read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The kind of the source config file (`nemoclaw.yaml` beside the blueprints).
pub const KIND_SOURCE_CONFIG: &str = "SourceConfig";

/// File names that hold the source config rather than a blueprint.
pub const SOURCE_CONFIG_NAMES: [&str; 2] = ["nemoclaw.yaml", "nemoclaw.yml"];

/// A typed document read from a file.
#[derive(Debug, Clone)]
pub enum Document {
    Blueprint(Box<Blueprint>),
    SourceConfig(Box<SourceConfig>),
    /// A YAML file of another kind (a Kubernetes manifest, a CI file): not ours, skipped.
    Other {
        kind: Option<String>,
    },
}

/// A file that was read and parsed, with its text kept for diagnostics and diffs.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub text: Arc<str>,
    pub doc: Document,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: Option<serde_saphyr_value::Any>,
    #[serde(default)]
    kind: Option<serde_saphyr_value::Any>,
}

/// A minimal "any scalar" used to read `kind`/`apiVersion` without failing on odd types.
mod serde_saphyr_value {
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    pub struct Any(pub Option<String>);

    impl<'de> de::Deserialize<'de> for Any {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Any;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any value")
                }
                fn visit_str<E>(self, v: &str) -> Result<Any, E> {
                    Ok(Any(Some(v.to_string())))
                }
                fn visit_bool<E>(self, v: bool) -> Result<Any, E> {
                    Ok(Any(Some(v.to_string())))
                }
                fn visit_i64<E>(self, v: i64) -> Result<Any, E> {
                    Ok(Any(Some(v.to_string())))
                }
                fn visit_u64<E>(self, v: u64) -> Result<Any, E> {
                    Ok(Any(Some(v.to_string())))
                }
                fn visit_f64<E>(self, v: f64) -> Result<Any, E> {
                    Ok(Any(Some(v.to_string())))
                }
                fn visit_unit<E>(self) -> Result<Any, E> {
                    Ok(Any(None))
                }
                fn visit_none<E>(self) -> Result<Any, E> {
                    Ok(Any(None))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Any, A::Error> {
                    while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(Any(None))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Any, A::Error> {
                    while s.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(Any(None))
                }
            }
            d.deserialize_any(V)
        }
    }
}

/// The YAML options every nemoclaw file is read with: strict, small, and bomb-proof.
pub fn yaml_options() -> Options {
    let mut opts = Options::default();
    opts.with_snippet = false;
    opts.duplicate_keys = DuplicateKeyPolicy::Error;
    opts.strict_booleans = true;
    let mut budget = Budget::default();
    budget.max_events = 200_000;
    budget.max_nodes = 100_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_depth = 32;
    budget.max_documents = 2;
    budget.max_recorded_anchor_events = 100_000;
    budget.max_total_scalar_bytes = usize::try_from(2 * MAX_FILE_BYTES).unwrap_or(usize::MAX);
    opts.budget = Some(budget);
    opts.alias_limits.max_total_replayed_events = 100_000;
    opts.alias_limits.max_replay_stack_depth = 16;
    opts
}

/// Reads a file's text, refusing what is not a small regular UTF-8 file.
pub fn read_text(path: &Path) -> Result<Arc<str>, Diagnostic> {
    let meta = fs::metadata(path).map_err(|e| io_diag(path, &e))?;
    if meta.is_dir() {
        return Err(Diagnostic::error(
            path,
            "file.unreadable",
            "is a directory, not a blueprint file",
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::error(
            path,
            "file.too-large",
            format!(
                "file is {} bytes; blueprint files are limited to {} bytes (1 MiB)",
                meta.len(),
                MAX_FILE_BYTES
            ),
        )
        .hint("a blueprint is a few kilobytes: check that this is the right file"));
    }
    // At most MAX_FILE_BYTES (checked above), so it fits; the capacity is only a hint anyway.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| io_diag(path, &e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Diagnostic::error(
            path,
            "file.too-large",
            "file grew past 1 MiB while being read",
        ));
    }
    match String::from_utf8(bytes) {
        Ok(s) => Ok(Arc::from(s)),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            let col = valid.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            Err(Diagnostic::error(path, "file.encoding", "file is not valid UTF-8").at(line, col))
        }
    }
}

fn io_diag(path: &Path, e: &std::io::Error) -> Diagnostic {
    let what = match e.raw_os_error() {
        Some(libc::ELOOP) => "symbolic link loop (too many levels of symbolic links)".to_string(),
        _ => e.to_string(),
    };
    Diagnostic::error(path, "file.unreadable", format!("cannot read file: {what}"))
}

/// Parses text into a typed value with nemoclaw's YAML options, mapping errors to diagnostics.
pub fn parse_as<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, Diagnostic> {
    serde_saphyr::from_str_with_options::<T>(text, yaml_options())
        .map_err(|e| yaml_diag(path, text, &e))
}

/// Reads and parses one file.
pub fn load_file(path: &Path) -> Result<Loaded, Diagnostic> {
    let text = read_text(path)?;
    let doc = parse_document(path, &text)?;
    Ok(Loaded { text, doc })
}

/// Parses text as one nemoclaw document, dispatching on `kind` (and on the file name for the
/// source config).
pub fn parse_document(path: &Path, text: &str) -> Result<Document, Diagnostic> {
    if text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    }) {
        return Err(Diagnostic::error(path, "file.empty", "file is empty")
            .at(1, 1)
            .hint(format!("a blueprint starts with `apiVersion: {API_VERSION}` and `kind: {KIND_BLUEPRINT}`; `nemoclaw init` writes an example")));
    }
    let header: Header = parse_as(path, text)?;
    let kind = header.kind.and_then(|k| k.0);
    let api = header.api_version.and_then(|a| a.0);
    let is_config_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| SOURCE_CONFIG_NAMES.contains(&n));
    let map = || SourceMap::build(text);
    match kind.as_deref() {
        Some(KIND_BLUEPRINT) => {
            check_api_version(path, api.as_deref(), &map)?;
            let bp: Blueprint = parse_as(path, text)?;
            Ok(Document::Blueprint(Box::new(bp)))
        }
        Some(KIND_SOURCE_CONFIG) => {
            check_api_version(path, api.as_deref(), &map)?;
            Ok(Document::SourceConfig(Box::new(parse_as(path, text)?)))
        }
        None if is_config_name => Ok(Document::SourceConfig(Box::new(parse_as(path, text)?))),
        None if api.as_deref() == Some(API_VERSION) => {
            let pos = map().value("");
            let mut d = Diagnostic::error(path, "schema.missing-field", "missing field `kind`")
                .hint(format!("add `kind: {KIND_BLUEPRINT}`"));
            if let Some(p) = pos {
                d = d.at(p.line, p.column);
            }
            Err(d)
        }
        Some(other) if api.as_deref() == Some(API_VERSION) => {
            let pos = map().value("kind");
            let mut d = Diagnostic::error(
                path,
                "schema.unknown-kind",
                format!("unknown kind `{other}` for {API_VERSION}"),
            );
            d.hint = Some(
                match did_you_mean(other, [KIND_BLUEPRINT, KIND_SOURCE_CONFIG]) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "nemoclaw reads `kind: {KIND_BLUEPRINT}` and `kind: {KIND_SOURCE_CONFIG}`"
                    ),
                },
            );
            if let Some(p) = pos {
                d = d.at(p.line, p.column);
            }
            Err(d)
        }
        _ => Ok(Document::Other { kind }),
    }
}

fn check_api_version(
    path: &Path,
    api: Option<&str>,
    map: &dyn Fn() -> SourceMap,
) -> Result<(), Diagnostic> {
    if api == Some(API_VERSION) {
        return Ok(());
    }
    let m = map();
    let (msg, pos) = match api {
        None => ("missing field `apiVersion`".to_string(), m.value("")),
        Some(a) => (
            format!("unsupported apiVersion `{a}`"),
            m.value("apiVersion"),
        ),
    };
    let mut d = Diagnostic::error(path, "schema.api-version", msg)
        .hint(format!("this release reads `apiVersion: {API_VERSION}`"));
    if let Some(p) = pos {
        d = d.at(p.line, p.column);
    }
    Err(d)
}

/// Turns a YAML/serde error into a diagnostic with a stable code and a useful hint.
fn yaml_diag(path: &Path, text: &str, err: &YamlError) -> Diagnostic {
    let mut inner = err;
    while let YamlError::AliasError { error, .. } | YamlError::WithSnippet { error, .. } = inner {
        inner = error;
    }
    let (code, hint): (&'static str, Option<String>) = match inner {
        YamlError::SerdeUnknownField { field, expected, .. } => (
            "schema.unknown-field",
            Some(match did_you_mean(field, expected.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("fields allowed here: {}", expected.join(", ")),
            }),
        ),
        YamlError::SerdeUnknownVariant { variant, expected, .. } => (
            "schema.unknown-value",
            Some(match did_you_mean(variant, expected.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("one of: {}", expected.join(", ")),
            }),
        ),
        YamlError::SerdeMissingField { .. } => ("schema.missing-field", None),
        YamlError::DuplicateMappingKey { .. } => ("yaml.duplicate-key", Some("each key may appear once in a mapping: remove or merge the repeated one".into())),
        YamlError::Budget { .. }
        | YamlError::AliasReplayLimitExceeded { .. }
        | YamlError::AliasExpansionLimitExceeded { .. }
        | YamlError::AliasReplayStackDepthExceeded { .. }
        | YamlError::AliasReplayCounterOverflow { .. } => (
            "yaml.too-complex",
            Some("the document exceeds nemoclaw's limits on aliases, nesting or size (a YAML bomb?): write it out plainly".into()),
        ),
        YamlError::MultipleDocuments { .. } => ("yaml.multiple-documents", Some("put one blueprint per file".into())),
        YamlError::SerdeInvalidType { .. }
        | YamlError::SerdeInvalidValue { .. }
        | YamlError::SerdeInvalidLength { .. }
        | YamlError::InvalidScalar { .. }
        | YamlError::InvalidBooleanStrict { .. }
        | YamlError::NullIntoString { .. }
        | YamlError::Message { .. } => ("schema.invalid", None),
        _ => ("yaml.syntax", None),
    };
    let found = || {
        err.location()
            .and_then(|l| {
                Some((
                    usize::try_from(l.span().byte_offset()?).ok()?,
                    usize::try_from(l.span().byte_len()?).ok()?,
                ))
            })
            .and_then(|(start, len)| text.get(start..start + len))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty() && t.len() <= 80)
    };
    let mut message = match inner {
        YamlError::DuplicateMappingKey { key: Some(k), .. } => format!("duplicate key `{k}`"),
        YamlError::DuplicateMappingKey { key: None, .. } => "duplicate key".to_string(),
        YamlError::MultipleDocuments { .. } => {
            "the file holds more than one YAML document (`---`)".to_string()
        }
        YamlError::InvalidScalar { ty, .. } => {
            let want = match *ty {
                t if t.starts_with('u') => "a whole number of 0 or more",
                t if t.starts_with('i') => "a whole number",
                t if t.starts_with('f') => "a number",
                "bool" => "true or false",
                other => other,
            };
            match found() {
                Some(v) => format!("`{v}` is not {want}"),
                None => format!("expected {want}"),
            }
        }
        _ => strip_location(&inner.to_string()),
    };
    if code == "yaml.syntax" && message.contains("tab") {
        message.push_str(" (YAML indents with spaces, never tabs)");
    }
    if code == "yaml.too-complex" {
        message = format!("document exceeds nemoclaw's YAML limits ({message})");
    }
    let mut d = Diagnostic::error(path, code, message);
    d.hint = hint;
    if let Some(loc) = err.location().or_else(|| inner.location()) {
        // Saturated: a position past usize::MAX is past the end of any text we hold.
        let line = usize::try_from(loc.line()).unwrap_or(usize::MAX);
        let col = usize::try_from(loc.column()).unwrap_or(usize::MAX);
        if line > 0 {
            d = d.at(line, col.max(1));
        }
    }
    // Never echo a credential in an error about it.
    if let (Some(line), true) = (d.line, !text.is_empty()) {
        if text.lines().nth(line - 1).is_some_and(line_has_secret) {
            d.show_source = false;
        }
    }
    d
}

fn line_has_secret(line: &str) -> bool {
    line.split(|c: char| {
        c.is_whitespace() || c == ':' || c == '"' || c == '\'' || c == ',' || c == '{' || c == '}'
    })
    .any(super::credential::looks_like_secret)
}

/// Removes serde-saphyr's trailing ` at line N, column M` (the diagnostic carries it already).
fn strip_location(msg: &str) -> String {
    if let Some(i) = msg.rfind(" at line ") {
        let tail = &msg[i + " at line ".len()..];
        if tail
            .split(", column ")
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        {
            return msg[..i].to_string();
        }
    }
    msg.strip_prefix("error: ").unwrap_or(msg).to_string()
}

/// Parses text as `T` (used by tests and by the source config).
pub fn parse_str<T: DeserializeOwned>(text: &str) -> Result<T, Diagnostic> {
    parse_as(Path::new("<input>"), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Result<Document, Diagnostic> {
        parse_document(Path::new("t.yaml"), text)
    }

    #[test]
    fn unknown_field_suggests_the_right_one() {
        let e = doc("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: a\n  version: 1\nnetwork:\n  egress:\n    allowedDomain: [x]\n").unwrap_err();
        assert_eq!(e.code, "schema.unknown-field");
        assert_eq!((e.line, e.column), (Some(8), Some(5)));
        assert_eq!(e.hint.as_deref(), Some("did you mean `allowedDomains`?"));
        assert!(!e.message.contains("at line"), "{}", e.message);
    }

    #[test]
    fn yaml_bomb_is_refused_fast() {
        let mut s = String::from("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: a\n  version: 1\n  labels:\n    a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n");
        for i in 1..10 {
            let p = i - 1;
            s.push_str(&format!(
                "    a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
            ));
        }
        let t = std::time::Instant::now();
        let e = doc(&s).unwrap_err();
        assert!(t.elapsed().as_millis() < 1000);
        assert_eq!(e.code, "yaml.too-complex", "{e:?}");
    }

    #[test]
    fn other_kinds_are_skipped_and_empty_files_refused() {
        assert!(matches!(
            doc("apiVersion: v1\nkind: ConfigMap\n").unwrap(),
            Document::Other { .. }
        ));
        assert_eq!(doc("# nothing\n\n").unwrap_err().code, "file.empty");
        assert_eq!(
            doc("apiVersion: nemoclaw.dev/v2\nkind: Blueprint\n")
                .unwrap_err()
                .code,
            "schema.api-version"
        );
        assert_eq!(
            doc("apiVersion: nemoclaw.dev/v1\nkind: Bluprint\n")
                .unwrap_err()
                .hint
                .as_deref(),
            Some("did you mean `Blueprint`?")
        );
    }

    #[test]
    fn tabs_and_duplicates() {
        let e = doc("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n\tname: a\n")
            .unwrap_err();
        assert_eq!(e.code, "yaml.syntax");
        assert!(e.message.contains("tab"));
        let e = doc("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nkind: Blueprint\n").unwrap_err();
        assert_eq!(e.code, "yaml.duplicate-key");
        assert_eq!(e.line, Some(3));
    }
}
