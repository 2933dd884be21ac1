//! `nemoclaw plan` over 1,000 blueprints with 1,000 deployed (goal: under 200 ms, no changes).
//!
//! The deployed side is synthetic inventory records (1,000 live supervisors do not fit on two
//! cores); the bench holds each sandbox's supervisor pid-file lock itself, so `plan` sees every
//! supervisor alive exactly as it would in production, and finds nothing to change. Printed
//! beside it, as the baseline, is `validate` of the same directory: the plan's overhead on top
//! of reading the source is the inventory, the liveness probes and the diffing.
//!
//! Run: `cargo bench --bench plan`.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a benchmark stops loudly at the first broken step, and its statistics are floats rounded for display"
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use nemoclaw::home::{FileLock, Home};
use nemoclaw::reconcile::inventory::{
    blueprint_hash, save_record, Deployed, SourceRef, RECORD_FORMAT,
};

const N: usize = 1000;
const RUNS: usize = 11;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn record(bp: nemoclaw::blueprint::Blueprint, src: &std::path::Path) -> Deployed {
    Deployed {
        format: RECORD_FORMAT,
        name: bp.metadata.name.clone(),
        hash: blueprint_hash(&bp),
        version: bp.metadata.version,
        blueprint: bp,
        source: SourceRef {
            kind: "dir".into(),
            location: src.display().to_string(),
            file: None,
            commit: None,
        },
        created_at: 0,
        applied_at: 0,
        stopped: false,
        hold: None,
        plugin_hash: None,
    }
}

fn main() {
    // Each held lock is an open file: make room for them.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        hard.min(65536),
        hard,
    )
    .expect("setrlimit");

    let tmp = tempfile::tempdir().expect("temp dir");
    let src = tmp.path().join("blueprints");
    std::fs::create_dir(&src).unwrap();
    for i in 0..N {
        std::fs::write(src.join(format!("agent-{i:04}.yaml")), common::blueprint(i)).unwrap();
    }
    let home = Home::at(tmp.path().join("home"));
    home.ensure().unwrap();
    let set = nemoclaw::blueprint::set::load_paths(std::slice::from_ref(&src), &Default::default());
    assert_eq!(set.blueprints.len(), N, "generated blueprints are valid");
    let mut locks = Vec::new();
    for e in &set.blueprints {
        let rec = record(e.blueprint.clone(), &src);
        save_record(&home, &rec).unwrap();
        locks.push(
            FileLock::acquire(
                &home.run_dir(&rec.name).join("supervisor.pid"),
                "bench supervisor",
                Duration::ZERO,
            )
            .unwrap(),
        );
    }

    let bin = env!("CARGO_BIN_EXE_nemoclaw");
    let time = |home: &Home, args: &[&str], want: i32| {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            let out = Command::new(bin)
                .args(args)
                .env("NEMOCLAW_HOME", home.root())
                .output()
                .unwrap();
            times.push(t.elapsed());
            assert_eq!(
                out.status.code(),
                Some(want),
                "{args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        median(times)
    };
    let dir = src.to_str().unwrap();
    let plan = time(
        &home,
        &["plan", "--dir", dir, "--detailed-exitcode", "-q"],
        0,
    );
    let validate = time(&home, &["validate", "-q", dir], 0);
    let noop_apply = time(&home, &["apply", "--auto-approve", "-q", "--dir", dir], 0);
    // A no-op apply of one blueprint (the quickstart's size), in its own home.
    let one = tmp.path().join("one");
    std::fs::create_dir(&one).unwrap();
    std::fs::copy(src.join("agent-0000.yaml"), one.join("agent-0000.yaml")).unwrap();
    let one_dir = one.to_str().unwrap();
    let home_one = Home::at(tmp.path().join("home-one"));
    home_one.ensure().unwrap();
    let first = set.blueprints[0].blueprint.clone();
    save_record(&home_one, &record(first.clone(), &one)).unwrap();
    locks.push(
        FileLock::acquire(
            &home_one
                .run_dir(&first.metadata.name)
                .join("supervisor.pid"),
            "bench supervisor",
            Duration::ZERO,
        )
        .unwrap(),
    );
    let noop_apply_one = time(
        &home_one,
        &["apply", "--auto-approve", "-q", "--dir", one_dir],
        0,
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("plan: {N} blueprints, {N} deployed, no changes; median of {RUNS} runs");
    println!("{:<52} {:>10}", "", "median ms");
    println!(
        "{:<52} {:>10.1}",
        "nemoclaw plan --detailed-exitcode (exit 0)",
        ms(plan)
    );
    println!(
        "{:<52} {:>10.1}",
        "nemoclaw validate (baseline: reading the source)",
        ms(validate)
    );
    println!(
        "{:<52} {:>10.1}",
        "nemoclaw apply, no changes (1,000 deployed)",
        ms(noop_apply)
    );
    println!(
        "{:<52} {:>10.1}",
        "nemoclaw apply, no changes (1 deployed)",
        ms(noop_apply_one)
    );
    println!("ratio: plan costs {:.2}x validate", ms(plan) / ms(validate));
    let goal = Duration::from_millis(200);
    println!(
        "goal: under {} ms -> {}",
        goal.as_millis(),
        if plan < goal { "met" } else { "NOT met" }
    );
    drop(locks);
}
