//! Saved plans (`plan -o FILE`): exactly what was planned, with the source fingerprint and the
//! inventory generation it was planned against, so `apply FILE` refuses a stale plan.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::inventory::SourceRef;
use crate::blueprint::Blueprint;

/// The format of a saved plan file.
pub const SAVED_PLAN_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedPlan {
    pub format: u32,
    pub source: SourceRef,
    /// The source directory (the checkout's directory for git sources).
    pub source_dir: PathBuf,
    /// For git sources: the directory of blueprints inside the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_path: Option<PathBuf>,
    pub fingerprint: String,
    pub inventory_generation: u64,
    pub prune: bool,
    pub allow_empty: bool,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub replace: Vec<String>,
    #[serde(default)]
    pub retry: Vec<String>,
    /// The desired blueprints as planned.
    pub desired: Vec<Blueprint>,
}

#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a nemoclaw plan file")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path} is plan format {found}; this nemoclaw reads format {SAVED_PLAN_FORMAT}: plan again"
    )]
    Format { path: PathBuf, found: u32 },
}

impl SavedPlan {
    pub fn read(path: &Path) -> Result<SavedPlan, SavedPlanError> {
        let bytes = std::fs::read(path).map_err(|source| SavedPlanError::Io {
            path: path.into(),
            source,
        })?;
        let plan: SavedPlan =
            serde_json::from_slice(&bytes).map_err(|source| SavedPlanError::Parse {
                path: path.into(),
                source,
            })?;
        if plan.format != SAVED_PLAN_FORMAT {
            return Err(SavedPlanError::Format {
                path: path.into(),
                found: plan.format,
            });
        }
        Ok(plan)
    }
}
