//! Observability: structured logs, status, metrics and GPU discovery.

pub mod logging;
pub mod logs;
