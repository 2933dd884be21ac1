//! Printing a [`StateDiff`] for a plan: a summary line, then every entry sorted by path
//! (`+` added, `-` removed, `~` changed, with its diff), at most [`MAX_FILES_SHOWN`] of them.

use std::path::Path;

use super::{
    Changed, Content, Entry, EntryKind, StateDiff, TableRows, MAX_DIFF_BYTES, MAX_DIFF_LINES,
    MAX_FILES_SHOWN,
};

/// Indent of an entry under the summary line, and of its details under the entry.
const ENTRY: &str = "  ";
const DETAIL: &str = "      ";

/// The diff as lines, each starting with `indent` and ending in `\n`.
pub fn render(diff: &StateDiff, indent: &str) -> String {
    if diff.is_empty() {
        return format!("{indent}no changes to state\n");
    }
    let mut lines = vec![format!("state: {}", diff.summary())];
    let items = sorted_items(diff);
    for item in items.iter().take(MAX_FILES_SHOWN) {
        lines.extend(item.lines());
    }
    if items.len() > MAX_FILES_SHOWN {
        let rest = items.len() - MAX_FILES_SHOWN;
        lines.push(format!("{ENTRY}... and {rest} more files changed"));
    }
    lines.iter().map(|l| format!("{indent}{l}\n")).collect()
}

enum Item<'a> {
    Added(&'a Entry),
    Removed(&'a Entry),
    Changed(&'a Changed),
}

impl Item<'_> {
    fn path(&self) -> &Path {
        Path::new(match self {
            Self::Added(e) | Self::Removed(e) => &e.path,
            Self::Changed(c) => &c.path,
        })
    }

    fn lines(&self) -> Vec<String> {
        match self {
            Self::Added(e) => vec![entry_line('+', e)],
            Self::Removed(e) => vec![entry_line('-', e)],
            Self::Changed(c) => changed_lines(c),
        }
    }
}

/// Added, removed and changed entries in one list, in the trees' path order.
fn sorted_items(diff: &StateDiff) -> Vec<Item<'_>> {
    let mut items: Vec<Item<'_>> = (diff.added.iter().map(Item::Added))
        .chain(diff.removed.iter().map(Item::Removed))
        .chain(diff.changed.iter().map(Item::Changed))
        .collect();
    items.sort_by(|a, b| a.path().cmp(b.path()));
    items
}

fn entry_line(sign: char, e: &Entry) -> String {
    match (e.kind, e.size) {
        (EntryKind::File, Some(size)) => format!("{ENTRY}{sign} {} ({size} bytes)", e.path),
        (EntryKind::Dir, _) => format!("{ENTRY}{sign} {}/ (dir)", e.path),
        (kind, _) => format!("{ENTRY}{sign} {} ({})", e.path, kind.as_str()),
    }
}

/// The `~ PATH (what changed)` line and the diff below it.
fn changed_lines(c: &Changed) -> Vec<String> {
    let mut what: Vec<String> = Vec::new();
    what.extend(content_label(c));
    if let Some(m) = &c.mode {
        what.push(format!("mode {} → {}", m.before, m.after));
    }
    if let Some(o) = &c.owner {
        what.push(format!("owner {} → {}", o.before, o.after));
    }
    let head = if what.is_empty() {
        format!("{ENTRY}~ {}", c.path)
    } else {
        format!("{ENTRY}~ {} ({})", c.path, what.join("; "))
    };
    let mut lines = vec![head];
    lines.extend(
        content_details(&c.content)
            .into_iter()
            .map(|l| format!("{DETAIL}{l}")),
    );
    lines
}

fn content_label(c: &Changed) -> Option<String> {
    Some(match &c.content {
        Content::Same => return None,
        Content::TypeChanged => {
            format!("{} → {}", c.kind_before.as_str(), c.kind_after.as_str())
        }
        Content::Text {
            format,
            same_value: true,
            ..
        } => format!("{}, same value: only formatting changed", format.as_str()),
        Content::Text { format, .. } => format.as_str().to_owned(),
        Content::Binary {
            size_before,
            size_after,
            ..
        } => format!("binary, {size_before} → {size_after} bytes"),
        Content::Large {
            size_before,
            size_after,
        } => format!(
            "over {} MiB, not diffed: {size_before} → {size_after} bytes",
            MAX_DIFF_BYTES >> 20
        ),
        Content::Sqlite { .. } => "sqlite".to_owned(),
        Content::Symlink {
            target_before,
            target_after,
        } => format!("symlink {target_before} → {target_after}"),
    })
}

/// The lines shown under a changed entry (without indent).
fn content_details(content: &Content) -> Vec<String> {
    match content {
        Content::Text {
            diff,
            omitted_lines,
            ..
        } => diff_lines(diff, *omitted_lines),
        Content::Binary {
            note: Some(note), ..
        } => vec![note.clone()],
        Content::Sqlite {
            schema_diff,
            omitted_lines,
            tables,
        } => sqlite_lines(schema_diff, *omitted_lines, tables),
        _ => Vec::new(),
    }
}

fn diff_lines(diff: &str, omitted: usize) -> Vec<String> {
    let mut lines: Vec<String> = diff.lines().map(str::to_owned).collect();
    if omitted > 0 {
        lines.push(format!("... {omitted} more diff lines not shown"));
    }
    lines
}

fn sqlite_lines(schema_diff: &str, omitted: usize, tables: &[TableRows]) -> Vec<String> {
    let mut lines = if schema_diff.is_empty() {
        vec!["schema unchanged".to_owned()]
    } else {
        diff_lines(schema_diff, omitted)
    };
    lines.extend(tables.iter().take(MAX_DIFF_LINES).map(table_line));
    if tables.len() > MAX_DIFF_LINES {
        let rest = tables.len() - MAX_DIFF_LINES;
        lines.push(format!("... and {rest} more tables"));
    }
    let counts_same = tables.iter().all(|t| t.before == t.after);
    if schema_diff.is_empty() && counts_same {
        lines.push("row counts unchanged; the data differs".to_owned());
    }
    lines
}

fn table_line(t: &TableRows) -> String {
    let rows = |n: Option<u64>| n.map_or_else(|| "(no table)".to_owned(), |n| format!("{n}"));
    if t.before == t.after {
        format!("table {}: {} rows (unchanged)", t.name, rows(t.before))
    } else {
        format!(
            "table {}: {} → {} rows",
            t.name,
            rows(t.before),
            rows(t.after)
        )
    }
}
