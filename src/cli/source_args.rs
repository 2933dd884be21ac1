//! The desired-state source flags shared by `plan`, `apply` and `watch`.

use std::path::PathBuf;

use clap::Args;

use crate::source::SourceSpec;

#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// A directory of blueprints (default: the home's blueprints/).
    #[arg(long, value_name = "DIR", conflicts_with = "git")]
    pub dir: Option<PathBuf>,
    /// A git repository URL (https:// or file://).
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
    /// The branch, tag or commit to use.
    #[arg(
        long = "ref",
        value_name = "REF",
        default_value = "main",
        requires = "git"
    )]
    pub reference: String,
    /// The directory of blueprints inside the repository.
    #[arg(long, value_name = "PATH", requires = "git")]
    pub path: Option<PathBuf>,
}

impl SourceArgs {
    pub fn spec(&self, home: &crate::home::Home) -> SourceSpec {
        match &self.git {
            Some(url) => SourceSpec::Git {
                url: url.clone(),
                reference: self.reference.clone(),
                path: self.path.clone(),
            },
            None => SourceSpec::Dir(self.dir.clone().unwrap_or_else(|| home.blueprints())),
        }
    }
}

/// The planning flags shared by `plan` and `apply`.
#[derive(Debug, Clone, Args)]
pub struct PlanFlags {
    /// Destroy deployed sandboxes whose blueprint is gone from the source.
    #[arg(long)]
    pub prune: bool,
    /// With --prune, allow an empty source (destroys everything deployed).
    #[arg(long)]
    pub allow_empty: bool,
    /// Limit the plan to these sandboxes.
    #[arg(long, value_name = "NAME")]
    pub target: Vec<String>,
    /// Replace these sandboxes even when unchanged (brings back stopped or given-up ones).
    #[arg(long, value_name = "NAME")]
    pub replace: Vec<String>,
    /// Try the upgrade of these sandboxes again although it failed with the same blueprint.
    #[arg(long, value_name = "NAME")]
    pub retry: Vec<String>,
}

impl PlanFlags {
    pub fn options(&self) -> crate::reconcile::plan::PlanOptions {
        crate::reconcile::plan::PlanOptions {
            prune: self.prune,
            allow_empty: self.allow_empty,
            targets: self.target.clone(),
            replace: self.replace.clone(),
            retry: self.retry.clone(),
        }
    }
}
