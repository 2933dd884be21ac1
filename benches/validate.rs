//! `nemoclaw validate` on a directory of 1,000 generated blueprints (goal: under 1 s on the
//! 2-core CI machine), side by side with a peer run in the same script: Python's PyYAML (C
//! loader) plus `jsonschema` checking the same files against our JSON Schema, which is what a
//! generic "YAML against a schema" CI step does (and it checks less: no semantic rules).
//!
//! Run: `cargo bench --bench validate`. The peer needs `pip install pyyaml jsonschema`.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a benchmark stops loudly at the first broken step, and its statistics are floats rounded for display"
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BLUEPRINTS: usize = 1000;
const RUNS: usize = 11;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_runs(mut f: impl FnMut() -> bool) -> Option<Duration> {
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        if !f() {
            return None;
        }
        times.push(t.elapsed());
    }
    Some(median(times))
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..BLUEPRINTS {
        std::fs::write(
            dir.path().join(format!("agent-{i:04}.yaml")),
            common::blueprint(i),
        )
        .expect("write blueprint");
    }
    let bin = env!("CARGO_BIN_EXE_nemoclaw");
    let ours = time_runs(|| {
        let out = Command::new(bin)
            .arg("validate")
            .arg("-q")
            .arg(dir.path())
            .output()
            .expect("run nemoclaw");
        assert!(
            out.status.success(),
            "generated blueprints must be valid: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        true
    })
    .expect("nemoclaw runs");

    let in_process = time_runs(|| {
        let set =
            nemoclaw::blueprint::set::load_paths(&[dir.path().to_path_buf()], &Default::default());
        set.blueprints.len() == BLUEPRINTS
    })
    .expect("library validation");

    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/blueprint.schema.json");
    let peer_script = r#"
import sys, glob, json, yaml, jsonschema
schema = json.load(open(sys.argv[2]))
v = jsonschema.Draft202012Validator(schema)
bad = 0
for f in sorted(glob.glob(sys.argv[1] + "/*.yaml")):
    doc = yaml.load(open(f), Loader=yaml.CSafeLoader)
    bad += sum(1 for _ in v.iter_errors(doc))
sys.exit(1 if bad else 0)
"#;
    let peer = time_runs(|| {
        Command::new("python3")
            .args(["-c", peer_script])
            .arg(dir.path())
            .arg(&schema)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    });

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("validate: {BLUEPRINTS} blueprints, median of {RUNS} runs");
    println!("{:<58} {:>10}", "", "median ms");
    println!(
        "{:<58} {:>10.1}",
        "nemoclaw validate DIR (process, full semantic checks)",
        ms(ours)
    );
    println!(
        "{:<58} {:>10.1}",
        "nemoclaw library load_paths (in process)",
        ms(in_process)
    );
    match peer {
        Some(p) => {
            println!("{:<58} {:>10.1}", "python3 PyYAML(C) + jsonschema (schema only)", ms(p));
            println!("ratio: nemoclaw is {:.1}x faster than the Python schema check", ms(p) / ms(ours));
        }
        None => println!("peer skipped: python3 with pyyaml and jsonschema not found (pip install pyyaml jsonschema)"),
    }
    let goal = Duration::from_secs(1);
    println!(
        "goal: under {} ms -> {}",
        goal.as_millis(),
        if ours < goal { "met" } else { "NOT met" }
    );
}
