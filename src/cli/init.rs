//! `nemoclaw init`: creates the home (0700) with its layout and an example blueprint. It never
//! overwrites: an existing example blueprint makes it stop with nothing changed.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context as _;
use clap::Args;

use super::{Context, Exit};

/// The example `init` writes: the quickstart blueprint shipped in `examples/quickstart/`.
pub const EXAMPLE_BLUEPRINT: &str = include_str!("../../examples/quickstart/quickstart.yaml");

/// The example with its editor modeline pointing at the schema `init` writes into the home.
fn example_for_home() -> String {
    EXAMPLE_BLUEPRINT
        .lines()
        .map(|l| {
            if l.starts_with("# yaml-language-server:") {
                "# yaml-language-server: $schema=../blueprint.schema.json"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {}

pub fn run(_a: InitArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = ctx.home()?;
    let example = home.blueprints().join("quickstart.yaml");
    if example.exists() {
        anyhow::bail!(
            "{} already exists: this home is initialised and init changed nothing (edit the blueprints there, or set $NEMOCLAW_HOME to start another home)",
            example.display()
        );
    }
    home.ensure()?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&example)
        .with_context(|| format!("cannot create {}", example.display()))?;
    f.write_all(example_for_home().as_bytes())?;
    f.sync_all()?;
    // The schema beside the blueprints gives editors completion without any network access.
    let schema = home.root().join("blueprint.schema.json");
    if !schema.exists() {
        crate::home::write_atomic(
            &schema,
            crate::blueprint::blueprint_schema_json().as_bytes(),
            0o644,
        )?;
    }
    if !ctx.quiet {
        println!(
            "Initialised {} with an example blueprint:",
            home.root().display()
        );
        println!("  {}", example.display());
        println!("Next: nemoclaw validate");
    }
    Ok(Exit::Ok)
}
