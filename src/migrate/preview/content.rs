//! Comparing the content of one path on both sides: files (text, JSON, YAML, TOML, SQLite,
//! binary, huge) and symlink targets.

use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use similar::TextDiff;

use super::{
    sqlite, Content, PreviewError, TextFormat, DIFF_CONTEXT, MAX_DIFF_BYTES, MAX_DIFF_LINES,
};

/// One relative path and the two roots it lives under.
pub(super) struct Sides<'a> {
    pub before: &'a Path,
    pub after: &'a Path,
    pub rel: &'a Path,
}

impl Sides<'_> {
    pub fn before_path(&self) -> PathBuf {
        self.before.join(self.rel)
    }

    pub fn after_path(&self) -> PathBuf {
        self.after.join(self.rel)
    }
}

/// Maps an I/O error on `path` to a [`PreviewError`].
pub(super) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> PreviewError + '_ {
    move |source| PreviewError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How two regular files of the given sizes differ, or `None` if their bytes are equal.
pub(super) fn files(
    s: &Sides<'_>,
    size_before: u64,
    size_after: u64,
) -> Result<Option<Content>, PreviewError> {
    let (old, new) = (s.before_path(), s.after_path());
    if size_before == size_after && same_bytes(&old, &new)? {
        return Ok(None);
    }
    if sqlite::is_database(&old).map_err(io_at(&old))?
        && sqlite::is_database(&new).map_err(io_at(&new))?
    {
        return sqlite::diff(s).map(Some);
    }
    if size_before > MAX_DIFF_BYTES || size_after > MAX_DIFF_BYTES {
        return Ok(Some(Content::Large {
            size_before,
            size_after,
        }));
    }
    let a = fs::read(&old).map_err(io_at(&old))?;
    let b = fs::read(&new).map_err(io_at(&new))?;
    Ok(Some(match (as_text(&a), as_text(&b)) {
        (Some(a), Some(b)) => text(s.rel, a, b),
        _ => Content::Binary {
            size_before,
            size_after,
            note: None,
        },
    }))
}

/// How two symlinks differ: their targets, or `None` if they point to the same place.
pub(super) fn links(s: &Sides<'_>) -> Result<Option<Content>, PreviewError> {
    let (old, new) = (s.before_path(), s.after_path());
    let a = fs::read_link(&old).map_err(io_at(&old))?;
    let b = fs::read_link(&new).map_err(io_at(&new))?;
    Ok((a != b).then(|| Content::Symlink {
        target_before: a.to_string_lossy().into_owned(),
        target_after: b.to_string_lossy().into_owned(),
    }))
}

/// Whether two files of equal size hold the same bytes, read in chunks (files may be large).
fn same_bytes(a: &Path, b: &Path) -> Result<bool, PreviewError> {
    const CHUNK: usize = 64 * 1024;
    let mut fa = File::open(a).map_err(io_at(a))?;
    let mut fb = File::open(b).map_err(io_at(b))?;
    let (mut ba, mut bb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(io_at(a))?;
        let m = read_full(&mut fb, &mut bb).map_err(io_at(b))?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The bytes as text: valid UTF-8 without NUL bytes.
fn as_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.contains('\0'))
}

/// The format a file's extension names.
fn format_of(rel: &Path) -> TextFormat {
    match rel.extension().and_then(|e| e.to_str()) {
        Some("json") => TextFormat::Json,
        Some("yaml" | "yml") => TextFormat::Yaml,
        Some("toml") => TextFormat::Toml,
        _ => TextFormat::Text,
    }
}

/// JSON pretty-printed (with a final newline), or `None` if it does not parse.
fn pretty_json(s: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    serde_json::to_string_pretty(&v).ok().map(|p| p + "\n")
}

/// The unified diff of two texts; JSON that parses on both sides is diffed pretty-printed.
fn text(rel: &Path, a: &str, b: &str) -> Content {
    let format = format_of(rel);
    let pretty = match format {
        TextFormat::Json => pretty_json(a).zip(pretty_json(b)),
        _ => None,
    };
    let (diff, omitted_lines) = match &pretty {
        Some((a, b)) if a != b => unified(rel, a, b),
        _ => unified(rel, a, b),
    };
    Content::Text {
        format,
        diff,
        omitted_lines,
        same_value: matches!(&pretty, Some((a, b)) if a == b),
    }
}

/// The unified diff `before/REL` → `after/REL`, truncated to [`MAX_DIFF_LINES`] lines after
/// its two headers; returns it and the number of lines left out.
pub(super) fn unified(rel: &Path, a: &str, b: &str) -> (String, usize) {
    let rel = super::walk::display(rel);
    let full = TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(DIFF_CONTEXT)
        .header(&format!("before/{rel}"), &format!("after/{rel}"))
        .to_string();
    truncate_lines(&full, 2 + MAX_DIFF_LINES)
}

/// The first `keep` lines of `s` (each ending in `\n`) and the number of lines dropped.
fn truncate_lines(s: &str, keep: usize) -> (String, usize) {
    let total = s.lines().count();
    if total <= keep {
        return (s.to_owned(), 0);
    }
    let kept: String = s.split_inclusive('\n').take(keep).collect();
    (kept, total - keep)
}
