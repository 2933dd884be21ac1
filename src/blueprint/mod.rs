//! Blueprints: the v1 model, loading with precise errors, and validation.
//!
//! - [`types`]: the serde/schemars types of `nemoclaw.dev/v1`.
//! - [`load`]: reading one file with size and complexity limits into a typed [`load::Document`].
//! - [`validate`]: semantic checks of one blueprint (pure), and [`set`]: a whole source
//!   (unique names, `dependsOn`, plugins, presets, migration scripts).
//! - [`diag`]: diagnostics and their renderings; [`source_map`]: field path -> line and column.

pub mod config;
pub mod credential;
pub mod diag;
pub mod load;
pub mod plugin;
pub mod quantity;
pub mod set;
pub mod source_map;
pub mod types;
pub mod validate;

pub use config::SourceConfig;
pub use diag::{Diagnostic, Severity};
pub use types::*;

/// The blueprint JSON Schema, pretty-printed (what `nemoclaw schema` prints).
pub fn blueprint_schema_json() -> String {
    let schema = schemars::schema_for!(types::Blueprint);
    serde_json::to_string_pretty(&schema).expect("a schema always serialises")
}

/// The source config (`nemoclaw.yaml`) JSON Schema, pretty-printed.
pub fn source_config_schema_json() -> String {
    let schema = schemars::schema_for!(config::SourceConfig);
    serde_json::to_string_pretty(&schema).expect("a schema always serialises")
}
