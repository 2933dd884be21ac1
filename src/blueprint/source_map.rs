//! Where each field of a YAML document sits in its file.
//!
//! Semantic validation works on plain Rust values and names the field it complains about by a
//! path (`network.egress.allowedDomains[2]`). This map, built from the YAML parser's events,
//! turns such a path back into a line and column, so every diagnostic points at the exact spot
//! without threading spans through the blueprint types.

use std::collections::HashMap;

use granit_parser::{Event, Parser};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Positions of the keys and values of one YAML document, by field path.
#[derive(Debug, Default)]
pub struct SourceMap {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        expecting_key: bool,
    },
    Seq {
        path: String,
        index: usize,
    },
    /// A complex (non-scalar) mapping key; its content is not addressable.
    Opaque {
        depth: usize,
    },
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl SourceMap {
    /// Builds the map of the first document in `source`. Parse errors end the walk early: the
    /// deserializer reports them with their own positions.
    pub fn build(source: &str) -> SourceMap {
        let mut map = SourceMap::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut started = false;
        for item in Parser::new_from_str(source) {
            let Ok((event, span)) = item else { break };
            let pos = Pos {
                line: span.start.line(),
                column: span.start.col() + 1,
            };
            let opens = matches!(event, Event::MappingStart(..) | Event::SequenceStart(..));
            let closes = matches!(event, Event::MappingEnd | Event::SequenceEnd);
            match event {
                Event::DocumentStart(..) => {
                    if started {
                        break;
                    }
                    started = true;
                    continue;
                }
                Event::DocumentEnd => break,
                Event::Scalar(..)
                | Event::Alias(..)
                | Event::MappingStart(..)
                | Event::SequenceStart(..) => {}
                Event::MappingEnd | Event::SequenceEnd => {}
                _ => continue,
            }
            if let Some(Frame::Opaque { depth }) = stack.last_mut() {
                if opens {
                    *depth += 1;
                } else if closes {
                    *depth -= 1;
                    if *depth == 0 {
                        stack.pop();
                        map.finish_value(&mut stack);
                    }
                }
                continue;
            }
            if closes {
                stack.pop();
                map.finish_value(&mut stack);
                continue;
            }
            // A node: a key, or a value at a path.
            let path = match stack.last_mut() {
                None => String::new(),
                Some(Frame::Map {
                    path,
                    key,
                    expecting_key,
                }) if *expecting_key => {
                    if let Event::Scalar(text, ..) = &event {
                        let full = child(path, text);
                        map.keys.entry(full).or_insert(pos);
                        *key = Some(text.to_string());
                        *expecting_key = false;
                    } else if opens {
                        *key = None;
                        *expecting_key = false;
                        stack.push(Frame::Opaque { depth: 1 });
                    } else {
                        *key = None;
                        *expecting_key = false;
                    }
                    continue;
                }
                Some(Frame::Map { path, key, .. }) => child(path, key.as_deref().unwrap_or("?")),
                Some(Frame::Seq { path, index }) => {
                    let p = format!("{path}[{index}]");
                    *index += 1;
                    p
                }
                Some(Frame::Opaque { .. }) => unreachable!("handled above"),
            };
            map.values.entry(path.clone()).or_insert(pos);
            match event {
                Event::MappingStart(..) => stack.push(Frame::Map {
                    path,
                    key: None,
                    expecting_key: true,
                }),
                Event::SequenceStart(..) => stack.push(Frame::Seq { path, index: 0 }),
                _ => map.finish_value(&mut stack),
            }
        }
        map
    }

    fn finish_value(&mut self, stack: &mut [Frame]) {
        if let Some(Frame::Map { expecting_key, .. }) = stack.last_mut() {
            *expecting_key = true;
        }
    }

    /// The position of the value at `path`, or of the nearest ancestor that exists (a missing
    /// field is reported at the mapping that should hold it).
    pub fn value(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return Some(*pos);
            }
            p = parent(p)?;
        }
    }

    /// The position of the key at `path` (for "this field should not be here" errors), falling
    /// back to the value's position.
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }
}

/// `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> ``; None at the root.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    match path.rfind(['.', '[']) {
        Some(i) => Some(&path[..i]),
        None => Some(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
apiVersion: nemoclaw.dev/v1
metadata:
  name: demo
network:
  egress:
    allowedDomains:
      - api.github.com
      - {host: example.com, ports: [8443]}
    blockedPorts: [25, 70000]
";

    #[test]
    fn finds_values_and_keys() {
        let m = SourceMap::build(DOC);
        assert_eq!(m.value("metadata.name"), Some(Pos { line: 3, column: 9 }));
        assert_eq!(m.key("metadata.name"), Some(Pos { line: 3, column: 3 }));
        assert_eq!(
            m.value("network.egress.allowedDomains[0]"),
            Some(Pos { line: 7, column: 9 })
        );
        assert_eq!(
            m.value("network.egress.allowedDomains[1].ports[0]"),
            Some(Pos {
                line: 8,
                column: 37
            })
        );
        assert_eq!(
            m.value("network.egress.blockedPorts[1]"),
            Some(Pos {
                line: 9,
                column: 24
            })
        );
    }

    #[test]
    fn missing_paths_fall_back_to_the_parent() {
        let m = SourceMap::build(DOC);
        assert_eq!(m.value("network.egress.presets"), m.value("network.egress"));
        assert_eq!(m.value("inference.backends"), m.value(""));
    }
}
