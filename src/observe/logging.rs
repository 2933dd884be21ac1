//! Where `tracing` events go (the gateway's warnings: accept failures, the DNS server stopping,
//! egress log write errors ...), filtered by `NEMOCLAW_LOG` (an `EnvFilter` directive such as
//! `warn` or `nemoclaw::gateway=debug`; default `warn`):
//!
//! - the CLI ([`init_terminal`]): human-readable lines on stderr;
//! - the supervisor ([`init_supervisor`]): JSON lines on its stderr, which is
//!   `logs/<name>/supervisor.jsonl`, in the shape of the supervisor's own events
//!   ([`event_line`]): `{"ts", "sandbox", "event": "log", "detail": {"level", "target",
//!   "message", ...fields}}`.

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The environment variable holding the filter directive.
pub const FILTER_ENV: &str = "NEMOCLAW_LOG";
/// The filter when [`FILTER_ENV`] is unset or invalid.
const DEFAULT_FILTER: &str = "warn";
/// The `event` of a supervisor log line that carries a `tracing` event.
pub const TRACING_EVENT: &str = "log";

fn filter() -> EnvFilter {
    EnvFilter::try_from_env(FILTER_ENV).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// The CLI's subscriber: human-readable lines on stderr. A no-op if one is already set.
/// Without `NEMOCLAW_LOG` a plain level filter does (an `EnvFilter` costs every command a few
/// hundred microseconds of start-up, and `run` is measured against bubblewrap).
pub fn init_terminal() {
    let fmt = tracing_subscriber::fmt().with_writer(std::io::stderr);
    let _ = match std::env::var_os(FILTER_ENV) {
        None => fmt.with_max_level(tracing::Level::WARN).try_init(),
        Some(_) => fmt.with_env_filter(filter()).try_init(),
    };
}

/// The supervisor's subscriber for `sandbox`: JSON lines on stderr, in the shape of
/// [`event_line`]. A no-op if one is already set.
pub fn init_supervisor(sandbox: &str) {
    let _ = tracing_subscriber::registry()
        .with(SupervisorLines {
            sandbox: sandbox.to_string(),
            write: write_line,
        })
        .with(filter())
        .try_init();
}

/// One line of the supervisor log: when, which sandbox, what happened, and its details.
pub fn event_line(sandbox: &str, event: &str, detail: Value) -> Value {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    serde_json::json!({"ts": ts, "sandbox": sandbox, "event": event, "detail": detail})
}

/// Writes `line` and a newline to stderr in one write, so lines from the supervisor's loop and
/// from the gateway's threads never interleave.
pub fn write_line(line: &Value) {
    let mut text = line.to_string();
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// The layer that renders `tracing` events as supervisor log lines and hands them to `write`.
struct SupervisorLines<W> {
    sandbox: String,
    write: W,
}

impl<S: Subscriber, W: Fn(&Value) + Send + Sync + 'static> Layer<S> for SupervisorLines<W> {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut detail = Map::new();
        detail.insert("level".into(), meta.level().as_str().to_lowercase().into());
        detail.insert("target".into(), meta.target().into());
        event.record(&mut Fields(&mut detail));
        (self.write)(&event_line(
            &self.sandbox,
            TRACING_EVENT,
            Value::Object(detail),
        ));
    }
}

/// Collects an event's fields (`message` included) as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn tracing_events_become_supervisor_lines() {
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = seen.clone();
        let layer = SupervisorLines {
            sandbox: "demo".into(),
            write: move |v: &Value| sink.lock().unwrap().push(v.clone()),
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(path = "/x/egress.jsonl", error = %"disk full", "writing the egress log");
        });
        let lines = seen.lock().unwrap();
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["sandbox"], "demo");
        assert_eq!(line["event"], TRACING_EVENT);
        assert!(line["ts"].as_f64().is_some_and(|t| t > 0.0));
        let detail = &line["detail"];
        assert_eq!(detail["level"], "warn");
        assert_eq!(detail["message"], "writing the egress log");
        assert_eq!(detail["path"], "/x/egress.jsonl");
        assert_eq!(detail["error"], "disk full");
        assert_eq!(detail["target"], module_path!());
    }
}
