//! `nemoclaw schema`: the JSON Schema of blueprints (or of the source config), generated from the
//! Rust types. `schemas/*.schema.json` are these outputs, kept fresh by a test.

use clap::{Args, ValueEnum};

use super::{Context, Exit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// `kind: Blueprint` documents.
    Blueprint,
    /// The source config file (`nemoclaw.yaml`).
    SourceConfig,
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
    };
    println!("{text}");
    Ok(Exit::Ok)
}
