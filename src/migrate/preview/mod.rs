//! What a migration changed: the difference between two state trees (the dry run of `plan`
//! and `migrate --dry-run` compares a scratch copy before and after the scripts ran).
//!
//! [`diff_trees`] walks both trees without following symlinks and lists the entries added,
//! removed and changed (content, type, mode or owner), sorted by path. Changed text files get a
//! unified diff (JSON pretty-printed first, so one-line JSON diffs readably), SQLite databases
//! a diff of their schema and their row counts per table, binary and huge files their sizes.
//! [`render`] prints it for a plan, truncated: at most [`MAX_DIFF_LINES`] diff lines per file
//! and [`MAX_FILES_SHOWN`] files in full.

mod content;
mod render;
mod sqlite;
mod walk;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use render::render;

/// Lines of unchanged context around each change in a unified diff.
pub const DIFF_CONTEXT: usize = 3;
/// Diff lines kept per file (after the `---`/`+++` headers); the rest are counted.
pub const MAX_DIFF_LINES: usize = 40;
/// Entries [`render`] shows in full; the rest are counted.
pub const MAX_FILES_SHOWN: usize = 20;
/// Files larger than this are compared but not diffed: only their sizes are shown.
pub const MAX_DIFF_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("cannot read {path} while comparing state trees")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The difference between two state trees. Every list is sorted by path; paths are relative
/// to the tree roots, `/`-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateDiff {
    pub added: Vec<Entry>,
    pub removed: Vec<Entry>,
    pub changed: Vec<Changed>,
}

impl StateDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// "3 added, 1 removed, 12 changed".
    pub fn summary(&self) -> String {
        format!(
            "{} added, {} removed, {} changed",
            self.added.len(),
            self.removed.len(),
            self.changed.len()
        )
    }
}

/// What a path is, as `lstat` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device node.
    Other,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Dir => "dir",
            Self::Symlink => "symlink",
            Self::Other => "special file",
        }
    }
}

/// An entry present on one side only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    /// Size in bytes (regular files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// An entry present on both sides that differs in type, mode or content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Changed {
    pub path: String,
    pub kind_before: EntryKind,
    pub kind_after: EntryKind,
    /// Permission bits before → after, in octal ("0644"), when they differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Before<String>>,
    /// Owner before → after, as "uid:gid", when it differs (the agent may no longer be able
    /// to use a file a migration handed to another user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Before<String>>,
    pub content: Content,
}

/// A value before → after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Before<T> {
    pub before: T,
    pub after: T,
}

/// How a changed entry's content differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Content {
    /// Same content: only the mode or owner changed.
    Same,
    /// The entry's type changed (see `kindBefore`, `kindAfter`).
    TypeChanged,
    /// A text file (JSON, YAML, TOML or other UTF-8 text): a unified diff, truncated to
    /// [`MAX_DIFF_LINES`] lines after the headers; `omittedLines` counts the rest.
    Text {
        format: TextFormat,
        diff: String,
        omitted_lines: usize,
        /// JSON that parses to the same value on both sides: only formatting or key order
        /// changed (the diff is then of the raw text).
        same_value: bool,
    },
    /// Not UTF-8 text: sizes only. `note` says why a SQLite database could not be read.
    Binary {
        size_before: u64,
        size_after: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Larger than [`MAX_DIFF_BYTES`] on one side: sizes only.
    Large { size_before: u64, size_after: u64 },
    /// A SQLite database on both sides: the schema's unified diff (empty when the schema is
    /// the same) and the row count of every table on either side.
    Sqlite {
        schema_diff: String,
        omitted_lines: usize,
        tables: Vec<TableRows>,
    },
    Symlink {
        target_before: String,
        target_after: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TextFormat {
    Text,
    Json,
    Yaml,
    Toml,
}

impl TextFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
            Self::Yaml => "yaml",
            Self::Toml => "toml",
        }
    }
}

/// Rows in one table before → after; `None` where the table does not exist on that side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableRows {
    pub name: String,
    pub before: Option<u64>,
    pub after: Option<u64>,
}

/// Compares the state tree `before` with `after`. Neither is modified: SQLite databases are
/// read from private copies, read-only. Symlinks are compared as links, never followed.
pub fn diff_trees(before: &Path, after: &Path) -> Result<StateDiff, PreviewError> {
    let old = walk::tree(before)?;
    let new = walk::tree(after)?;
    let mut diff = StateDiff::default();
    for (rel, node) in &old {
        match new.get(rel) {
            None => diff.removed.push(node.entry(rel)),
            Some(now) => {
                let sides = content::Sides { before, after, rel };
                if let Some(c) = compare(&sides, node, now)? {
                    diff.changed.push(c);
                }
            }
        }
    }
    diff.added = new
        .iter()
        .filter(|(rel, _)| !old.contains_key(*rel))
        .map(|(rel, node)| node.entry(rel))
        .collect();
    Ok(diff)
}

/// How one entry present in both trees changed, or `None` if it did not.
fn compare(
    sides: &content::Sides<'_>,
    old: &walk::Node,
    new: &walk::Node,
) -> Result<Option<Changed>, PreviewError> {
    let content = if old.kind != new.kind {
        Some(Content::TypeChanged)
    } else {
        match old.kind {
            EntryKind::File => content::files(sides, old.size, new.size)?,
            EntryKind::Symlink => content::links(sides)?,
            EntryKind::Dir | EntryKind::Other => None,
        }
    };
    let mode = (old.mode != new.mode).then(|| Before {
        before: format!("{:04o}", old.mode),
        after: format!("{:04o}", new.mode),
    });
    let owner = (old.owner != new.owner).then(|| Before {
        before: format!("{}:{}", old.owner.0, old.owner.1),
        after: format!("{}:{}", new.owner.0, new.owner.1),
    });
    if content.is_none() && mode.is_none() && owner.is_none() {
        return Ok(None);
    }
    Ok(Some(Changed {
        path: walk::display(sides.rel),
        kind_before: old.kind,
        kind_after: new.kind,
        mode,
        owner,
        content: content.unwrap_or(Content::Same),
    }))
}
