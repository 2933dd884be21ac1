//! `nemoclaw schema`: the JSON Schema of blueprints (or of the source config, or of a plugin's
//! `plugin.yaml`), generated from the Rust types. `schemas/*.schema.json` are these outputs, kept fresh by a test.

use clap::{Args, ValueEnum};

use super::{Context, Exit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// `kind: Blueprint` documents.
    Blueprint,
    /// The source config file (`nemoclaw.yaml`).
    SourceConfig,
    /// An agent plugin's `plugin.yaml` (`kind: Plugin`).
    Plugin,
}

#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// Which document's schema to print.
    #[arg(long, value_enum, default_value = "blueprint")]
    pub kind: SchemaKind,
}

pub fn run(a: SchemaArgs, _ctx: &Context) -> anyhow::Result<Exit> {
    let text = match a.kind {
        SchemaKind::Blueprint => crate::blueprint::blueprint_schema_json(),
        SchemaKind::SourceConfig => crate::blueprint::source_config_schema_json(),
        SchemaKind::Plugin => plugin_schema_json(),
    };
    println!("{text}");
    Ok(Exit::Ok)
}

/// The plugin manifest JSON Schema, pretty-printed.
fn plugin_schema_json() -> String {
    let schema = schemars::schema_for!(crate::blueprint::plugin::PluginManifest);
    serde_json::to_string_pretty(&schema).expect("a schema always serialises")
}
