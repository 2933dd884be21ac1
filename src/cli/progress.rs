//! Apply progress for people: on a terminal, a spinner line naming what is in flight, redrawn
//! in place, with a line per finished change above it; elsewhere, plain lines only.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::reconcile::apply::Progress;
use crate::reconcile::plan::ChangeKind;

const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

#[derive(Default)]
struct State {
    in_flight: BTreeMap<String, (ChangeKind, Instant)>,
    done: bool,
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
                        "{} {} {}: done in {:.1}s",
                        o.kind.symbol(),
                        o.kind.verb(),
                        o.name,
                        o.elapsed.as_secs_f64()
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
