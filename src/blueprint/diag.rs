//! Diagnostics: what validation found, where, and how to show it (human, JSON, GitHub).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub severity: Severity,
    /// A stable identifier such as `schema.unknown-field`.
    pub code: &'static str,
    pub message: String,
    /// The field path the finding is about (`network.egress.blockedPorts[1]`), when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// False when the source line must not be echoed (it holds a secret).
    #[serde(skip)]
    pub show_source: bool,
}

impl Diagnostic {
    pub fn error(file: &Path, code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line: None,
            column: None,
            severity: Severity::Error,
            code,
            message: message.into(),
            field: None,
            hint: None,
            show_source: true,
        }
    }

    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    /// `file:line:col: error[code]: message`, the first line of the human form.
    pub fn headline(&self) -> String {
        let mut s = self.file.display().to_string();
        if let (Some(l), Some(c)) = (self.line, self.column) {
            let _ = write!(s, ":{l}:{c}");
        }
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = write!(s, ": {sev}[{}]: {}", self.code, self.message);
        s
    }
}

/// Renders diagnostics the way a compiler does: headline, the offending line, a caret, a hint.
/// `source_of` returns a file's text when it was read.
pub fn render_human<'a>(
    diags: &[Diagnostic],
    source_of: impl Fn(&Path) -> Option<&'a str>,
) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.headline());
        out.push('\n');
        if let (Some(line), Some(col), true) = (d.line, d.column, d.show_source) {
            if let Some(text) = source_of(&d.file).and_then(|s| s.lines().nth(line - 1)) {
                let num = line.to_string();
                let pad = " ".repeat(num.len());
                let shown: String = text
                    .chars()
                    .take(200)
                    .map(|c| if c == '\t' { ' ' } else { c })
                    .collect();
                let caret_at = col.saturating_sub(1).min(shown.chars().count());
                let _ = writeln!(out, " {pad} |");
                let _ = writeln!(out, " {num} | {shown}");
                let _ = writeln!(out, " {pad} | {}^", " ".repeat(caret_at));
            }
        }
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "  = help: {h}");
        }
    }
    out
}

/// GitHub Actions workflow commands: `::error file=…,line=…,col=…,title=…::message`.
pub fn render_github(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let cmd = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut props = format!("file={}", gh_property(&d.file.display().to_string()));
        if let (Some(l), Some(c)) = (d.line, d.column) {
            let _ = write!(props, ",line={l},col={c}");
        }
        let _ = write!(props, ",title={}", gh_property(d.code));
        let mut msg = d.message.clone();
        if let Some(h) = &d.hint {
            let _ = write!(msg, " (help: {h})");
        }
        let _ = writeln!(out, "::{cmd} {props}::{}", gh_data(&msg));
    }
    out
}

fn gh_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn gh_property(s: &str) -> String {
    gh_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Suggests the closest of `candidates` to `word`, when one is close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let max_edits = (lower.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter_map(|c| {
            let cl = c.to_ascii_lowercase();
            let close = strsim::damerau_levenshtein(&lower, &cl) <= max_edits
                || strsim::jaro_winkler(&lower, &cl) >= 0.85;
            close.then(|| (strsim::jaro_winkler(&lower, &cl), c))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Diagnostic {
        Diagnostic::error(
            Path::new("bp/a.yaml"),
            "schema.unknown-field",
            "unknown field `allowedDomain`",
        )
        .at(2, 3)
        .hint("did you mean `allowedDomains`?")
    }

    #[test]
    fn human_form_has_caret_under_the_column() {
        let src = "egress:\n  allowedDomain: [x]\n";
        let out = render_human(&[sample()], |_| Some(src));
        assert!(out.starts_with(
            "bp/a.yaml:2:3: error[schema.unknown-field]: unknown field `allowedDomain`\n"
        ));
        assert!(out.contains(" 2 |   allowedDomain: [x]\n"), "{out}");
        assert!(out.contains("   |   ^\n"), "{out}");
        assert!(out.contains("= help: did you mean `allowedDomains`?"));
    }

    #[test]
    fn secret_lines_are_not_echoed() {
        let mut d = sample();
        d.show_source = false;
        let out = render_human(&[d], |_| Some("egress:\n  apiKey: nvapi-secret\n"));
        assert!(!out.contains("nvapi-secret"));
    }

    #[test]
    fn github_form_escapes() {
        let mut d = sample();
        d.message = "50% bad,\nreally".into();
        let out = render_github(&[d]);
        assert_eq!(
            out,
            "::error file=bp/a.yaml,line=2,col=3,title=schema.unknown-field::50%25 bad,%0Areally (help: did you mean `allowedDomains`?)\n"
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("allowedDomain", ["allowedDomains", "blockedPorts"]),
            Some("allowedDomains")
        );
        assert_eq!(
            did_you_mean("zzz", ["allowedDomains", "blockedPorts"]),
            None
        );
        assert_eq!(did_you_mean("nmi", ["local", "nim"]), Some("nim"));
        assert_eq!(did_you_mean("githbu", ["github", "gitlab"]), Some("github"));
    }
}
