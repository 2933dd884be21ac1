//! Loading a whole source (files and directories) and cross-file checks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diag::Diagnostic;
use super::load::{load_file, Document};
use super::types::Blueprint;

/// A blueprint read from a file, validated.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub text: Arc<str>,
    pub blueprint: Blueprint,
}

/// Loads and validates a single blueprint file.
pub fn load_one(path: &Path) -> Result<Entry, Vec<Diagnostic>> {
    let loaded = load_file(path).map_err(|d| vec![d])?;
    match loaded.doc {
        Document::Blueprint(bp) => Ok(Entry { path: path.to_path_buf(), text: loaded.text, blueprint: *bp }),
        _ => Err(vec![Diagnostic::error(path, "file.not-blueprint", "not a blueprint (kind: Blueprint)")]),
    }
}
