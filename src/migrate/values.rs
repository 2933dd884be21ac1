//! Conversions between file formats and Rhai values (objects become Rhai maps, arrays Rhai
//! arrays). JSON and JSONL go straight between text and Rhai values: migrations that rewrite
//! thousands of files spend their time here, and a `serde_json::Value` in between doubled it.
//! YAML and TOML pass through `serde_json::Value` (TOML dates become strings).

use rhai::{Dynamic, EvalAltResult};
use serde_json::Value;

/// Why a document could not be read or written in a format.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("line {line}: not valid JSON: {source}")]
    JsonLine {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("not valid YAML: {0}")]
    Yaml(#[from] serde_saphyr::Error),
    #[error("cannot write YAML: {0}")]
    YamlOut(#[from] serde_saphyr::SerializeError),
    #[error("not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("cannot write TOML (a TOML document is a map without `()` values): {0}")]
    TomlOut(#[from] toml::ser::Error),
    #[error("the value cannot be stored: {0}")]
    Convert(Box<EvalAltResult>),
    #[error("the file is not UTF-8 text")]
    NotText,
}

/// A Rhai value for a JSON value.
pub fn to_rhai(v: &Value) -> Result<Dynamic, ValueError> {
    rhai::serde::to_dynamic(v).map_err(ValueError::Convert)
}

/// The JSON value for a Rhai value (maps, arrays, strings, numbers, bools, `()` as null).
pub fn from_rhai(v: &Dynamic) -> Result<Value, ValueError> {
    rhai::serde::from_dynamic(v).map_err(ValueError::Convert)
}

pub fn text(bytes: Vec<u8>) -> Result<String, ValueError> {
    String::from_utf8(bytes).map_err(|_| ValueError::NotText)
}

pub fn parse_json(text: &str) -> Result<Dynamic, ValueError> {
    Ok(serde_json::from_str(text)?)
}

/// Pretty JSON: 2-space indent and a trailing newline.
pub fn json_pretty(v: &Dynamic) -> Result<String, ValueError> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    Ok(s)
}

/// One compact JSON value per line, each ending in `\n`.
pub fn json_line(v: &Dynamic) -> Result<String, ValueError> {
    let mut s = serde_json::to_string(v)?;
    s.push('\n');
    Ok(s)
}

/// The values of a JSONL document, blank lines skipped.
pub fn parse_jsonl(text: &str) -> Result<Vec<Dynamic>, ValueError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| ValueError::JsonLine {
                line: i + 1,
                source,
            })
        })
        .collect()
}

pub fn parse_yaml(text: &str) -> Result<Dynamic, ValueError> {
    to_rhai(&serde_saphyr::from_str::<Value>(text)?)
}

pub fn yaml(v: &Dynamic) -> Result<String, ValueError> {
    Ok(serde_saphyr::to_string(&from_rhai(v)?)?)
}

pub fn parse_toml(text: &str) -> Result<Dynamic, ValueError> {
    let table: toml::Table = toml::from_str(text)?;
    to_rhai(&toml_to_json(toml::Value::Table(table)))
}

pub fn toml_text(v: &Dynamic) -> Result<String, ValueError> {
    Ok(toml::to_string(&from_rhai(v)?)?)
}

fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_pretty_is_two_space_with_newline() {
        let d = parse_json("{\"b\": 1, \"a\": [true]}").unwrap();
        let out = json_pretty(&d).unwrap();
        assert_eq!(out, "{\n  \"a\": [\n    true\n  ],\n  \"b\": 1\n}\n");
        assert_eq!(
            from_rhai(&parse_json(&out).unwrap()).unwrap(),
            from_rhai(&d).unwrap()
        );
    }

    #[test]
    fn toml_dates_become_strings_and_round_trip() {
        let v = parse_toml("when = 1979-05-27T07:32:00Z\n[t]\nx = 1\n").unwrap();
        assert_eq!(from_rhai(&v).unwrap()["when"], "1979-05-27T07:32:00Z");
        assert_eq!(
            toml_text(&v).unwrap(),
            "when = \"1979-05-27T07:32:00Z\"\n\n[t]\nx = 1\n"
        );
    }

    #[test]
    fn jsonl_skips_blank_lines_and_names_the_bad_one() {
        assert_eq!(parse_jsonl("{\"a\":1}\n\n2\n").unwrap().len(), 2);
        let e = parse_jsonl("1\n{\n").unwrap_err().to_string();
        assert!(e.starts_with("line 2:"), "{e}");
    }

    #[test]
    fn yaml_round_trips() {
        let v = parse_yaml("a: 1\nb: [one, two]\n").unwrap();
        assert_eq!(from_rhai(&v).unwrap()["b"][1], "two");
        let back = parse_yaml(&yaml(&v).unwrap()).unwrap();
        assert_eq!(from_rhai(&back).unwrap(), from_rhai(&v).unwrap());
    }
}
