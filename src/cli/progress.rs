//! Apply progress for people: on a terminal, a spinner line naming what is in flight, redrawn
//! in place, with a line per finished change above it; elsewhere, plain lines only.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::reconcile::apply::Progress;
use crate::reconcile::plan::ChangeKind;
use crate::reconcile::upgrade::{Recovered, Timings, UpgradeError};

const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

#[derive(Default)]
struct State {
    in_flight: BTreeMap<String, (ChangeKind, Instant)>,
    done: bool,
}

/// How a committed upgrade spent its time.
fn upgrade_timings(t: Timings) -> String {
    format!(
        " (downtime {:.2}s: stop {:.2}s, snapshot {:.2}s, migrate {:.2}s, start {:.2}s)",
        t.downtime_ms as f64 / 1000.0,
        t.stop_ms as f64 / 1000.0,
        t.snapshot_ms as f64 / 1000.0,
        t.migrate_ms as f64 / 1000.0,
        t.start_ms as f64 / 1000.0
    )
}

/// Reports the interrupted upgrades an apply rolled back before planning; fails when one could
/// not be (nothing else is applied then).
pub fn report_recovered(
    results: &[(String, Result<Option<Recovered>, UpgradeError>)],
    quiet: bool,
) -> anyhow::Result<()> {
    for (name, r) in results {
        match r {
            Ok(Some(r)) if !quiet => println!(
                "! {name}: an upgrade v{}→v{} was interrupted ({:?} step); {} and the v{} record put back",
                r.from,
                r.to,
                r.phase,
                if r.restored { "its state was restored from the snapshot" } else { "its state was untouched" },
                r.from
            ),
            Ok(_) => {}
            Err(e) => anyhow::bail!(
                "finishing the interrupted upgrade of `{name}`: {}",
                crate::error_chain(e)
            ),
        }
    }
    Ok(())
}

/// Reports apply progress on stderr (finished changes on stdout).
pub struct Reporter {
    quiet: bool,
    tty: bool,
    state: Arc<Mutex<State>>,
    spinner: Option<std::thread::JoinHandle<()>>,
}

fn clear_line() {
    eprint!("\r\x1b[K");
}

impl Reporter {
    pub fn new(quiet: bool, tty: bool) -> Reporter {
        let state = Arc::new(Mutex::new(State::default()));
        let spinner = (tty && !quiet).then(|| {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                for frame in FRAMES.iter().cycle() {
                    std::thread::sleep(Duration::from_millis(100));
                    let st = crate::sync::lock(&state);
                    if st.done {
                        return;
                    }
                    if let Some(oldest) = st.in_flight.values().map(|(_, t)| *t).min() {
                        let names: Vec<String> = st
                            .in_flight
                            .iter()
                            .map(|(n, (k, _))| format!("{} {n}", k.verb()))
                            .collect();
                        clear_line();
                        eprint!(
                            "{frame} {} ({:.0}s)",
                            names.join(", "),
                            oldest.elapsed().as_secs_f64()
                        );
                        let _ = std::io::stderr().flush();
                    }
                }
            })
        });
        Reporter {
            quiet,
            tty,
            state,
            spinner,
        }
    }

    pub fn report(&self, p: Progress<'_>) {
        let mut st = crate::sync::lock(&self.state);
        match p {
            Progress::Started { name, kind } => {
                st.in_flight
                    .insert(name.to_string(), (kind, Instant::now()));
            }
            Progress::Finished(o) => {
                st.in_flight.remove(&o.name);
                if self.tty && !self.quiet {
                    clear_line();
                }
                match &o.result {
                    Ok(()) if !self.quiet => println!(
                        "{} {} {}: done in {:.1}s{}",
                        o.kind.symbol(),
                        o.kind.verb(),
                        o.name,
                        o.elapsed.as_secs_f64(),
                        o.upgrade.map(upgrade_timings).unwrap_or_default()
                    ),
                    Ok(()) => {}
                    Err(e) => eprintln!(
                        "{} {} {}: failed: {}",
                        o.kind.symbol(),
                        o.kind.verb(),
                        o.name,
                        crate::error_chain(e)
                    ),
                }
            }
        }
    }

    /// Stops the spinner and clears its line.
    pub fn finish(mut self) {
        crate::sync::lock(&self.state).done = true;
        if let Some(h) = self.spinner.take() {
            let _ = h.join();
            clear_line();
        }
    }
}
