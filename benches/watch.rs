//! `nemoclaw watch`: from a blueprint file's save to the start of the reconcile it triggers
//! (goal: under 300 ms median; the debounce that folds an editor's save burst into one
//! reconcile is 200 ms of it). The watched blueprint is suspended, so the reconciles start no
//! sandbox and the bench needs no root. Printed beside it: the latency a poll loop with
//! `--interval 60s` (the git default, and what a cron line gives) would have on average.
//!
//! Run: `cargo bench --bench watch`.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a benchmark stops loudly at the first broken step, and its statistics are floats rounded for display"
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SAVES: usize = 21;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let file = src.join("w.yaml");
    let blueprint = |n: usize| {
        format!("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: w\n  version: 1\n  labels: {{save: \"{n}\"}}\nagent:\n  type: demo\nsuspend: true\n")
    };
    std::fs::write(&file, blueprint(0)).unwrap();
    let log = tmp.path().join("watch.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
        .args(["watch", "--dir", src.to_str().unwrap()])
        .env("NEMOCLAW_HOME", tmp.path().join("home"))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let starts = |text: &str| -> Vec<f64> {
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "reconcile-start" && v["trigger"] == "file-change")
            .filter_map(|v| v["ts"].as_f64())
            .collect()
    };
    let wait_for = |n: usize| {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if starts(&text).len() >= n && text.matches("reconcile-done").count() > n {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("watch did not react to save {n}");
    };
    // Let the initial reconcile finish.
    let end = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("reconcile-done")
    {
        assert!(Instant::now() < end, "watch did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut latencies = Vec::new();
    for i in 1..=SAVES {
        let saved = now();
        std::fs::write(&file, blueprint(i)).unwrap();
        wait_for(i);
        let text = std::fs::read_to_string(&log).unwrap();
        let start = starts(&text)[i - 1];
        latencies.push((start - saved) * 1000.0);
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    latencies.sort_by(f64::total_cmp);
    let median = latencies[latencies.len() / 2];
    println!("watch: save -> reconcile start, {SAVES} saves");
    println!("{:<48} {:>10}", "", "median ms");
    println!(
        "{:<48} {:>10.1}",
        "nemoclaw watch (inotify, 200 ms debounce)", median
    );
    println!(
        "{:<48} {:>10.1}",
        "a 60 s poll loop (mean wait, computed)", 30_000.0
    );
    println!(
        "ratio: {:.0}x sooner than polling every 60 s",
        30_000.0 / median
    );
    println!(
        "goal: under 300 ms -> {}",
        if median < 300.0 { "met" } else { "NOT met" }
    );
}
