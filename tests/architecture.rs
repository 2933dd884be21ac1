//! The import rules of docs/architecture.md hold in the code: every top-level module of the
//! crate imports only the modules its line in the document's `imports` block allows, and every
//! module has a line. `cargo test --test architecture -- --nocapture` prints the graph.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `module: allowed allowed ...` lines of the ```imports block of docs/architecture.md.
fn allowed() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let block = doc
        .split("```imports\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/architecture.md has an ```imports block");
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (module, deps) = l.split_once(':').expect("`module: deps` lines");
            let deps = deps.split_whitespace().map(String::from).collect();
            (module.trim().to_string(), deps)
        })
        .collect()
}

/// The crate's top-level modules: `src/<m>.rs` and `src/<m>/`, less the entry points.
fn modules() -> BTreeSet<String> {
    std::fs::read_dir(root().join("src"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_stem()?.to_str()?.to_string();
            (p.is_dir() || p.extension()? == "rs").then_some(name)
        })
        .filter(|m| m != "lib" && m != "main")
        .collect()
}

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            rust_files(&e.unwrap().path(), out);
        }
    } else if p.is_file() && p.extension().is_some_and(|x| x == "rs") {
        out.push(p.to_path_buf());
    }
}

/// The top-level modules that `module`'s code names as `crate::<m>` (comments aside).
fn imports_of(module: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&root().join("src").join(module), &mut files);
    rust_files(&root().join("src").join(format!("{module}.rs")), &mut files);
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let before = line[..i].chars().last();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue; // `nemoclaw_crate::`, not ours
                }
                let rest = &line[i + "crate::".len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group
                        .split('}')
                        .next()
                        .unwrap_or("")
                        .split(',')
                        .map(|s| s.trim().split("::").next().unwrap_or(""))
                        .collect(),
                    None => vec![rest
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or("")],
                };
                out.extend(
                    names
                        .into_iter()
                        .filter(|n| known.contains(*n) && *n != module)
                        .map(String::from),
                );
            }
        }
    }
    out
}

#[test]
fn every_module_imports_only_what_the_architecture_allows() {
    let allowed = allowed();
    let known = modules();
    let mut problems = Vec::new();
    for m in &known {
        let Some(ok) = allowed.get(m) else {
            problems.push(format!("`{m}` has no line in the imports block"));
            continue;
        };
        let uses = imports_of(m, &known);
        println!(
            "{m:>10} -> {}",
            uses.iter().cloned().collect::<Vec<_>>().join(" ")
        );
        for u in uses.difference(ok) {
            problems.push(format!(
                "`{m}` imports `{u}`, which docs/architecture.md does not allow"
            ));
        }
    }
    for m in allowed.keys().filter(|m| !known.contains(*m)) {
        problems.push(format!(
            "the imports block names `{m}`, which is not a module"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_rules_have_no_cycle() {
    // A layered crate: following allowed imports never comes back to where it started.
    let allowed = allowed();
    fn visit(
        m: &str,
        allowed: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            return Some(path[i..].to_vec());
        }
        path.push(m.to_string());
        for d in allowed.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, allowed, path) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    for m in allowed.keys() {
        if let Some(cycle) = visit(m, &allowed, &mut Vec::new()) {
            panic!("the imports block has a cycle: {}", cycle.join(" -> "));
        }
    }
}
