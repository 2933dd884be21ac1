//! The Rhai engine a migration script runs in: the blueprint's limits (`migrations.limits`,
//! defaults `SCRIPT_*`) with a wall clock, no `eval`, no modules, the `state` API, and `print`,
//! `debug` and `log` sent to the upgrade log as `vN.rhai:LINE: text`.

use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use rhai::module_resolvers::DummyModuleResolver;
use rhai::{
    Array, Blob, Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext, Position,
    FLOAT, INT,
};

use crate::blueprint::defaults;
use crate::blueprint::ScriptLimits;
use crate::migrate::api;

/// [`ScriptLimits`] with every default filled in, in the units the engine takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub operations: u64,
    pub call_depth: usize,
    pub string: usize,
    pub array: usize,
    pub map: usize,
    pub wall: Duration,
}

impl Limits {
    pub fn of(l: &ScriptLimits) -> Limits {
        let size =
            |v: Option<u64>, d: u64| usize::try_from(v.unwrap_or(d).max(1)).unwrap_or(usize::MAX);
        Limits {
            operations: l.operations.unwrap_or(defaults::SCRIPT_OPERATIONS).max(1),
            call_depth: size(
                l.call_depth.map(u64::from),
                u64::from(defaults::SCRIPT_CALL_DEPTH),
            ),
            string: size(l.string_size, defaults::SCRIPT_STRING_SIZE),
            array: size(l.array_size, defaults::SCRIPT_ARRAY_SIZE),
            map: size(l.map_size, defaults::SCRIPT_MAP_SIZE),
            wall: l
                .wall_time
                .as_ref()
                .map_or(defaults::SCRIPT_WALL_TIME, |d| d.0),
        }
    }

    /// Stack for the script's thread: deep enough for `call_depth` nested calls (at most 1 GiB).
    pub fn stack_size(&self) -> usize {
        ((16 << 20) + self.call_depth.saturating_mul(256 << 10)).min(1 << 30)
    }
}

/// A fresh engine: limits, no `eval`, no modules, the state API and the log functions.
pub(crate) fn build_engine(limits: &Limits, script: &str, tx: Sender<String>) -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(limits.operations);
    e.set_max_call_levels(limits.call_depth);
    e.set_max_string_size(limits.string);
    e.set_max_array_size(limits.array);
    e.set_max_map_size(limits.map);
    e.disable_symbol("eval");
    e.disable_symbol("import");
    e.set_module_resolver(DummyModuleResolver::new());
    let deadline = Instant::now() + limits.wall;
    e.on_progress(move |ops| {
        (ops % 256 == 0 && Instant::now() > deadline).then(|| Dynamic::from("wall time"))
    });
    api::register(&mut e);
    register_log(&mut e, script, tx);
    e
}

/// `print(x)`, `log(x)` and `debug(x)` send `vN.rhai:LINE: x` to the log. `print` and `log`
/// are registered for every value type so they take precedence over Rhai's own `print` and
/// its math `log`.
fn register_log(e: &mut Engine, script: &str, tx: Sender<String>) {
    fn line(script: &str, pos: Position, text: &str) -> String {
        format!("{script}:{}: {text}", pos.line().unwrap_or(0))
    }
    macro_rules! for_every_type {
        ($($t:ty),*) => {$(
            let s = script.to_string();
            e.register_fn("print", move |ctx: NativeCallContext, x: $t| {
                line(&s, ctx.call_position(), &Dynamic::from(x).to_string())
            });
            let (s, log_tx) = (script.to_string(), tx.clone());
            e.register_fn("log", move |ctx: NativeCallContext, x: $t| {
                let _ = log_tx.send(line(&s, ctx.call_position(), &Dynamic::from(x).to_string()));
            });
        )*};
    }
    for_every_type!(
        INT,
        FLOAT,
        bool,
        char,
        (),
        ImmutableString,
        Array,
        Map,
        Blob,
        Dynamic
    );
    let print_tx = tx.clone();
    e.on_print(move |text| {
        let _ = print_tx.send(text.to_string());
    });
    let s = script.to_string();
    e.on_debug(move |text, _, pos| {
        let _ = tx.send(line(&s, pos, text));
    });
}

/// The message for a limit the script hit, naming the blueprint field that raises it.
pub(crate) fn limit_message(err: &EvalAltResult, l: &Limits) -> Option<String> {
    let (what, limit, field) = match err {
        EvalAltResult::ErrorTooManyOperations(_) => (
            "too many operations".to_string(),
            l.operations.to_string(),
            "operations",
        ),
        EvalAltResult::ErrorStackOverflow(_) => (
            "function calls nested too deep".to_string(),
            l.call_depth.to_string(),
            "callDepth",
        ),
        EvalAltResult::ErrorTerminated(..) => (
            "ran too long".to_string(),
            humantime::format_duration(l.wall).to_string(),
            "wallTime",
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) if what.contains("string") => (
            format!("{what} too large"),
            l.string.to_string(),
            "stringSize",
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) if what.contains("map") => {
            (format!("{what} too large"), l.map.to_string(), "mapSize")
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => (
            format!("{what} too large"),
            l.array.to_string(),
            "arraySize",
        ),
        _ => return None,
    };
    Some(format!(
        "{what}: the limit is {limit} (raise migrations.limits.{field})"
    ))
}
