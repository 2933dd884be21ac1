//! Runs the `vN.rhai` migration scripts of an upgrade on a state dir, one after the other,
//! each in a fresh Rhai engine with the blueprint's limits (`migrations.limits`), no `eval`
//! and no modules. `print`, `debug` and `log` lines go to the caller's log, prefixed
//! `vN.rhai:LINE: `. Each script's SQLite databases are committed when it succeeds and rolled
//! back when it fails.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{EvalAltResult, Position, Scope, INT};

use crate::blueprint::ScriptLimits;
use crate::migrate::api::State;
use crate::migrate::confine::{ConfineError, StateRoot};
use crate::migrate::sqlite::SqlError;
use setup::{build_engine, limit_message, Limits};

mod setup;

/// One migration script: `vN.rhai` migrates state from version N-1 to N.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub version: u32,
    pub script: PathBuf,
}

/// The `vN.rhai` in `dir` for N in from+1..=to, in order (missing ones skipped).
pub fn steps_in(dir: &Path, from: u32, to: u32) -> Result<Vec<Step>, ScriptError> {
    let meta = std::fs::metadata(dir).map_err(|source| ScriptError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(ScriptError::Dir {
            dir: dir.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
        });
    }
    Ok((from.saturating_add(1)..=to)
        .map(|version| Step {
            version,
            script: dir.join(format!("v{version}.rhai")),
        })
        .filter(|s| s.script.is_file())
        .collect())
}

/// What one upgrade's migration runs on.
pub struct RunInput<'a> {
    /// The sandbox name (the script's `name`).
    pub name: &'a str,
    /// The version deployed before the upgrade (the script's `from`).
    pub from: u32,
    /// The version the upgrade ends at (the script's `to`).
    pub to: u32,
    pub steps: &'a [Step],
    pub limits: &'a ScriptLimits,
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The versions whose scripts ran, in order.
    pub ran: Vec<u32>,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The script failed (or hit a limit); the message names the state path involved.
    #[error("{}:{line}:{column}: {message}", script.display())]
    Failed {
        script: PathBuf,
        line: usize,
        column: usize,
        message: String,
        state_path: Option<String>,
    },
    #[error("cannot read migration script {}", script.display())]
    Read {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the migrations dir {}", dir.display())]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the state for migration")]
    State(#[from] ConfineError),
    #[error("{}: the SQLite transaction could not be finished", script.display())]
    Commit {
        script: PathBuf,
        #[source]
        source: SqlError,
    },
    #[error("{}: the script's thread could not run", script.display())]
    Thread {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the steps in order on `state_dir`; `log` gets every print/debug/log line.
pub fn run(
    state_dir: &Path,
    input: &RunInput<'_>,
    log: &(dyn Fn(&str) + Sync),
) -> Result<RunReport, ScriptError> {
    let started = Instant::now();
    let root = Arc::new(StateRoot::open(state_dir)?);
    let limits = Limits::of(input.limits);
    let mut ran = Vec::new();
    for step in input.steps {
        run_step(&root, input, step, &limits, log)?;
        ran.push(step.version);
    }
    root.sync()?;
    Ok(RunReport {
        ran,
        elapsed: started.elapsed(),
    })
}

/// Runs one script on its own thread (its stack sized for the call depth) while this thread
/// passes its log lines on; then commits or rolls back its databases.
fn run_step(
    root: &Arc<StateRoot>,
    input: &RunInput<'_>,
    step: &Step,
    limits: &Limits,
    log: &(dyn Fn(&str) + Sync),
) -> Result<(), ScriptError> {
    let text = std::fs::read_to_string(&step.script).map_err(|source| ScriptError::Read {
        script: step.script.clone(),
        source,
    })?;
    let max_read = u64::try_from(limits.string).unwrap_or(u64::MAX);
    let state = State::new(root.clone(), max_read, limits.array);
    let (tx, rx) = mpsc::channel::<String>();
    let outcome = std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name(format!("migrate-v{}", step.version))
            .stack_size(limits.stack_size())
            .spawn_scoped(s, || {
                evaluate(&text, input, step, limits, state.clone(), tx)
            });
        for line in rx {
            log(&line);
        }
        worker.map(|w| w.join())
    });
    let outcome = match outcome {
        Err(source) => Err(ScriptError::Thread {
            script: step.script.clone(),
            source,
        }),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Ok(Ok(r)) => r,
    };
    let finished = state.finish(outcome.is_ok());
    outcome?;
    finished.map_err(|source| ScriptError::Commit {
        script: step.script.clone(),
        source,
    })
}

/// Compiles and runs one script in a fresh engine.
fn evaluate(
    text: &str,
    input: &RunInput<'_>,
    step: &Step,
    limits: &Limits,
    state: State,
    tx: Sender<String>,
) -> Result<(), ScriptError> {
    let script_name = format!("v{}.rhai", step.version);
    let engine = build_engine(limits, &script_name, tx);
    let ast = engine.compile(text).map_err(|e| ScriptError::Failed {
        script: step.script.clone(),
        line: e.position().line().unwrap_or(0),
        column: e.position().position().unwrap_or(0),
        message: format!("does not compile: {}", e.err_type()),
        state_path: None,
    })?;
    let mut scope = Scope::new();
    scope.push_constant("from", INT::from(input.from));
    scope.push_constant("to", INT::from(input.to));
    scope.push_constant("step", INT::from(step.version));
    scope.push_constant("name", input.name.to_string());
    scope.push("state", state.clone());
    engine
        .run_ast_with_scope(&mut scope, &ast)
        .map_err(|e| failed(step, &e, limits, &state))
}

/// The error for a failed script: the innermost error's position and message, a limit named
/// with the blueprint field that raises it, and the state path a state method failed on.
fn failed(step: &Step, err: &EvalAltResult, limits: &Limits, state: &State) -> ScriptError {
    let (inner, pos) = innermost(err);
    let message = limit_message(inner, limits).unwrap_or_else(|| plain_message(inner));
    let state_path = match inner {
        EvalAltResult::ErrorRuntime(m, _) => state.path_of_failure(&m.to_string()),
        _ => None,
    };
    ScriptError::Failed {
        script: step.script.clone(),
        line: pos.line().unwrap_or(0),
        column: pos.position().unwrap_or(0),
        message,
        state_path,
    }
}

/// The error at the bottom of a chain of function calls, and the deepest known position.
fn innermost(err: &EvalAltResult) -> (&EvalAltResult, Position) {
    let (mut cur, mut pos) = (err, err.position());
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = cur
    {
        cur = inner;
        if !inner.position().is_none() {
            pos = inner.position();
        }
    }
    (cur, pos)
}

/// Rhai's message without its own `(line N, position M)` suffix (the error carries those).
fn plain_message(err: &EvalAltResult) -> String {
    if let EvalAltResult::ErrorRuntime(m, _) = err {
        return m.to_string();
    }
    let text = err.to_string();
    let suffix = format!(" ({})", err.position());
    text.strip_suffix(&suffix).unwrap_or(&text).to_string()
}

#[cfg(test)]
mod tests;
