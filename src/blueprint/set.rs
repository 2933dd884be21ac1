//! Loading a whole source — files and directories of blueprints — and the checks that span
//! files: unique names, `dependsOn` (known names, no cycles), plugins (checked, each once) and
//! presets present in the source, migration and guard scripts (named for real versions, compiling as Rhai).
//!
//! Every file is checked and every problem reported in one run. Files are parsed and validated
//! in parallel; cross-file checks run after.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::SourceConfig;
use super::diag::{did_you_mean, Diagnostic, Severity};
use super::load::{parse_document, read_text, Document, SOURCE_CONFIG_NAMES};
use super::source_map::SourceMap;
use super::types::{BackendKind, Blueprint};
use super::validate::{self, Finding};

/// A blueprint read from a file and validated.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub text: Arc<str>,
    pub blueprint: Blueprint,
}

/// Options for loading a source.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Agent type for blueprints that name none (`hermes` for `nemohermes`).
    pub default_agent_type: String,
    /// More directories holding plugins as `<name>/plugin.yaml` (the home's `plugins/`): each
    /// is checked, and those that pass are agent types in every source. Their presets are the
    /// built-in ones and those in the `presets/` beside the directory (the home's layout).
    pub plugin_dirs: Vec<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            default_agent_type: super::types::defaults::agent_type(),
            plugin_dirs: Vec::new(),
        }
    }
}

/// Everything read from a source, valid or not.
#[derive(Debug, Default)]
pub struct SourceSet {
    /// Blueprints without errors, in file order.
    pub blueprints: Vec<Entry>,
    /// The source config of each directory that has one.
    pub configs: Vec<(PathBuf, SourceConfig)>,
    /// Every diagnostic, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// Files that were checked (blueprints and configs; other kinds are skipped).
    pub files_checked: usize,
    /// YAML files of other kinds that were skipped.
    pub skipped: Vec<PathBuf>,
    /// Text of every file read, for rendering diagnostics.
    pub texts: HashMap<PathBuf, Arc<str>>,
}

impl SourceSet {
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
    pub fn warning_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
    /// Whether the source config of any directory asks for pruning.
    pub fn prune(&self) -> bool {
        self.configs.iter().any(|(_, c)| c.prune)
    }
}

/// What a source directory provides to the blueprints in it.
#[derive(Debug, Default, Clone)]
struct DirContext {
    agent_types: BTreeSet<String>,
    /// Plugins present but refused (their problems are reported with their files).
    broken_plugins: BTreeSet<String>,
    presets: BTreeSet<String>,
    config: Option<SourceConfig>,
}

/// Loads and validates a single blueprint file (with its directory's plugins, presets and
/// source config). Errors are every diagnostic of severity error.
pub fn load_one(path: &Path) -> Result<Entry, Vec<Diagnostic>> {
    let set = load_paths(&[path.to_path_buf()], &LoadOptions::default());
    let errors: Vec<Diagnostic> = set
        .diagnostics
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    set.blueprints.into_iter().next().ok_or_else(|| {
        vec![
            Diagnostic::error(path, "file.not-blueprint", "not a blueprint")
                .hint("a blueprint has `apiVersion: nemoclaw.dev/v1` and `kind: Blueprint`"),
        ]
    })
}

/// Lists a directory's top-level YAML files, sorted. Subdirectories are never read.
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let p = entry?.path();
        let is_yaml = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml && !p.is_dir() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn dir_context(
    dir: &Path,
    plugins: &mut PluginChecks,
    diags: &mut Vec<Diagnostic>,
    texts: &mut HashMap<PathBuf, Arc<str>>,
) -> DirContext {
    let mut ctx = DirContext {
        presets: presets_of(dir),
        ..DirContext::default()
    };
    ctx.agent_types
        .extend(super::plugin::BUILTIN_NAMES.iter().map(|s| s.to_string()));
    let found = plugins.check_dir(&dir.join("plugins"), &ctx.presets, diags, texts);
    for (name, passed) in plugins.extra.clone().into_iter().chain(found) {
        if passed {
            ctx.agent_types.insert(name);
        } else {
            ctx.broken_plugins.insert(name);
        }
    }
    for name in SOURCE_CONFIG_NAMES {
        let p = dir.join(name);
        if p.is_file() {
            match read_text(&p) {
                Ok(text) => {
                    match parse_document(&p, &text) {
                        Ok(Document::SourceConfig(c)) => ctx.config = Some(*c),
                        Ok(_) => diags.push(
                            Diagnostic::error(&p, "schema.unknown-kind", format!("{name} is the source config file, but holds another kind of document"))
                                .hint("give it `kind: SourceConfig` (or no kind), or rename the file"),
                        ),
                        Err(d) => diags.push(d),
                    }
                    texts.insert(p.clone(), text);
                }
                Err(d) => diags.push(d),
            }
        }
    }
    ctx
}

/// The built-in presets and those in `dir`'s `presets/`.
fn presets_of(dir: &Path) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = crate::policy::presets::builtin_names()
        .map(String::from)
        .collect();
    if let Ok(rd) = fs::read_dir(dir.join("presets")) {
        for e in rd.flatten() {
            if let Some(name) = crate::policy::presets::preset_name(&e.path()) {
                out.insert(name.to_string());
            }
        }
    }
    out
}

/// The plugins checked in one load, by manifest (canonical path) and whether each passed: a
/// plugin is checked, and its problems reported, once however many blueprints share its
/// directory.
#[derive(Default)]
struct PluginChecks {
    passed: HashMap<PathBuf, bool>,
    /// Plugins of [`LoadOptions::plugin_dirs`] by name, and whether each passed: those that
    /// did are agent types in every directory.
    extra: BTreeMap<String, bool>,
}

impl PluginChecks {
    /// Checks every `<name>/plugin.yaml` under `plugins_dir`; returns each name and whether
    /// it passed.
    fn check_dir(
        &mut self,
        plugins_dir: &Path,
        presets: &BTreeSet<String>,
        diags: &mut Vec<Diagnostic>,
        texts: &mut HashMap<PathBuf, Arc<str>>,
    ) -> BTreeMap<String, bool> {
        let mut names = BTreeMap::new();
        let Ok(rd) = fs::read_dir(plugins_dir) else {
            return names;
        };
        for e in rd.flatten() {
            let dir = e.path();
            let manifest = dir.join(super::plugin::MANIFEST);
            let Some(name) = e.file_name().to_str().map(String::from) else {
                continue;
            };
            if !manifest.is_file() {
                continue;
            }
            let key = fs::canonicalize(&manifest).unwrap_or_else(|_| manifest.clone());
            let passed = match self.passed.get(&key) {
                Some(&p) => p,
                None => {
                    let p = check_plugin(&dir, &name, presets, diags, texts);
                    self.passed.insert(key, p);
                    p
                }
            };
            names.insert(name, passed);
        }
        names
    }
}

/// Checks the plugin in `dir` (named `name`), reporting into `diags` and keeping the text of
/// every file read for rendering. True when it passes.
fn check_plugin(
    dir: &Path,
    name: &str,
    presets: &BTreeSet<String>,
    diags: &mut Vec<Diagnostic>,
    texts: &mut HashMap<PathBuf, Arc<str>>,
) -> bool {
    let manifest = dir.join(super::plugin::MANIFEST);
    let text = match read_text(&manifest) {
        Ok(t) => t,
        Err(d) => {
            diags.push(d);
            return false;
        }
    };
    texts.insert(manifest.clone(), text.clone());
    let read = std::cell::RefCell::new(Vec::new());
    let file = |rel: &str| {
        let path = dir.join(rel);
        let t = read_text(&path).ok()?;
        read.borrow_mut().push((path, t.clone()));
        Some(t.to_string())
    };
    let result = super::plugin::check(name, &manifest, &text, &file, &|p| presets.contains(p));
    texts.extend(read.into_inner());
    match result {
        Ok(_) => true,
        Err(d) => {
            diags.extend(d);
            false
        }
    }
}

/// Loads files and directories. A directory means its top-level `*.yaml`/`*.yml` files whose
/// kind is Blueprint, plus its source config; a file means itself.
pub fn load_paths(paths: &[PathBuf], opts: &LoadOptions) -> SourceSet {
    let mut set = SourceSet::default();
    let mut plugins = PluginChecks::default();
    for d in &opts.plugin_dirs {
        let presets = presets_of(d.parent().unwrap_or(Path::new("")));
        let found = plugins.check_dir(d, &presets, &mut set.diagnostics, &mut set.texts);
        plugins.extra.extend(found);
    }
    let mut contexts: BTreeMap<PathBuf, DirContext> = BTreeMap::new();
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new(); // (file, its source dir)
    for p in paths {
        let meta = fs::metadata(p);
        if meta.as_ref().is_ok_and(|m| m.is_dir()) {
            match yaml_files(p) {
                Ok(list) => files.extend(list.into_iter().map(|f| (f, p.clone()))),
                Err(e) => set.diagnostics.push(Diagnostic::error(
                    p,
                    "file.unreadable",
                    format!("cannot read directory: {e}"),
                )),
            }
            if !contexts.contains_key(p) {
                let c = dir_context(p, &mut plugins, &mut set.diagnostics, &mut set.texts);
                contexts.insert(p.clone(), c);
            }
        } else {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            if !contexts.contains_key(&dir) {
                let c = dir_context(&dir, &mut plugins, &mut set.diagnostics, &mut set.texts);
                contexts.insert(dir.clone(), c);
            }
            files.push((p.clone(), dir));
        }
    }
    for (dir, c) in &contexts {
        if let Some(cfg) = &c.config {
            set.configs.push((dir.clone(), cfg.clone()));
        }
    }

    let results = parallel_map(&files, |(file, dir)| check_file(file, &contexts[dir], opts));
    let mut parsed = Vec::new();
    for r in results {
        if let Some(text) = r.text {
            set.texts.insert(r.path.clone(), text);
        }
        set.diagnostics.extend(r.diagnostics);
        if r.checked {
            set.files_checked += 1;
        }
        if r.skipped {
            set.skipped.push(r.path);
        }
        if let Some(e) = r.entry {
            parsed.push((e, r.valid));
        }
    }
    let bad = cross_file_checks(&parsed, &mut set.diagnostics);
    set.blueprints = parsed
        .into_iter()
        .enumerate()
        .filter(|(i, (_, valid))| *valid && !bad.contains(i))
        .map(|(_, (e, _))| e)
        .collect();
    set.diagnostics
        .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    set
}

/// Maps `f` over `items` on all cores, keeping order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if items.len() < 16 || threads == 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(&f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("validation worker panicked"))
            .collect()
    })
}

struct FileResult {
    path: PathBuf,
    text: Option<Arc<str>>,
    diagnostics: Vec<Diagnostic>,
    /// The parsed blueprint, valid or not (cross-file checks see every one).
    entry: Option<Entry>,
    valid: bool,
    checked: bool,
    skipped: bool,
}

fn check_file(path: &Path, ctx: &DirContext, opts: &LoadOptions) -> FileResult {
    let mut r = FileResult {
        path: path.to_path_buf(),
        text: None,
        diagnostics: Vec::new(),
        entry: None,
        valid: false,
        checked: true,
        skipped: false,
    };
    let is_config_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| SOURCE_CONFIG_NAMES.contains(&n));
    if is_config_name {
        // Read (and reported on) as the directory's source config.
        return r;
    }
    let text = match read_text(path) {
        Ok(t) => t,
        Err(d) => {
            r.diagnostics.push(d);
            return r;
        }
    };
    // Kept even when parsing fails, so the error can show the offending line.
    r.text = Some(text.clone());
    let doc = match parse_document(path, &text) {
        Ok(doc) => doc,
        Err(d) => {
            r.diagnostics.push(d);
            return r;
        }
    };
    let mut bp = match doc {
        Document::Blueprint(bp) => *bp,
        Document::SourceConfig(_) => return r,
        Document::Other { .. } => {
            r.checked = false;
            r.skipped = true;
            return r;
        }
    };
    if let Some(cfg) = &ctx.config {
        cfg.defaults.apply_to(&mut bp);
    }
    let vctx = validate::Context {
        agent_types: &ctx.agent_types,
        presets: &ctx.presets,
        default_agent_type: &opts.default_agent_type,
    };
    let mut findings = validate::check(&bp, &vctx);
    explain_broken_plugin(&mut findings, &bp, ctx, opts);
    let base = path.parent().unwrap_or(Path::new("."));
    findings.extend(check_source_files(&bp, base, &mut r.diagnostics));
    if !findings.is_empty() {
        let map = SourceMap::build(&text);
        r.diagnostics
            .extend(findings.into_iter().map(|f| locate(path, &map, f)));
    }
    r.valid = !r.diagnostics.iter().any(|d| d.severity == Severity::Error);
    // The agent type a blueprint leaves to the default is written in, so a plan, the deployed
    // copy and the supervisor all agree on it whatever the environment is later.
    if bp.agent.kind.is_none() && bp.agent.command.is_none() {
        bp.agent.kind = Some(opts.default_agent_type.clone());
    }
    r.entry = Some(Entry {
        path: path.to_path_buf(),
        text,
        blueprint: bp,
    });
    r
}

/// An unknown agent type whose plugin is there but refused says so, rather than suggesting to
/// add it.
fn explain_broken_plugin(
    findings: &mut [Finding],
    bp: &Blueprint,
    ctx: &DirContext,
    opts: &LoadOptions,
) {
    let kind = bp.agent.type_or(&opts.default_agent_type);
    if !ctx.broken_plugins.contains(kind) {
        return;
    }
    for f in findings
        .iter_mut()
        .filter(|f| f.code == "agent.unknown-type")
    {
        f.hint = Some(format!(
            "the plugin `{kind}` is there but has errors (reported at its files): fix them"
        ));
    }
}

/// Turns a finding into a diagnostic at its field's position.
pub(super) fn locate(file: &Path, map: &SourceMap, f: Finding) -> Diagnostic {
    let pos = if f.at_key {
        map.key(&f.path)
    } else {
        map.value(&f.path)
    };
    let mut d = Diagnostic::error(file, f.code, f.message);
    d.field = Some(f.path);
    d.hint = f.hint;
    d.show_source = !f.secret;
    if f.warning {
        d.severity = Severity::Warning;
    }
    if let Some(p) = pos {
        d = d.at(p.line, p.column);
    }
    d
}

/// Checks files the blueprint refers to inside its source: migration scripts, guard scripts,
/// mock reply files. Script syntax errors are reported in the script itself.
fn check_source_files(bp: &Blueprint, base: &Path, diags: &mut Vec<Diagnostic>) -> Vec<Finding> {
    let mut out = Vec::new();
    let finding = |code: &'static str, path: &str, message: String, hint: Option<String>| Finding {
        code,
        path: path.to_string(),
        message,
        hint,
        at_key: false,
        warning: false,
        secret: false,
    };
    // Built only when a script is there to compile: most blueprints have none, and the engine
    // costs more than the rest of a blueprint's checks.
    let engine = std::cell::OnceCell::new();
    let compile = |file: &Path, diags: &mut Vec<Diagnostic>| {
        let Ok(text) = fs::read_to_string(file) else {
            return;
        };
        if let Err(e) = engine.get_or_init(rhai::Engine::new_raw).compile(&text) {
            let pos = e.position();
            let mut d = Diagnostic::error(
                file,
                "script.compile",
                format!("does not compile as Rhai: {}", e.err_type()),
            );
            if let (Some(l), Some(c)) = (pos.line(), pos.position()) {
                d = d.at(l, c);
            }
            diags.push(d);
        }
    };
    if let Some(m) = &bp.migrations {
        let dir = base.join(&m.dir);
        match fs::read_dir(&dir) {
            Err(e) => out.push(finding(
                "migrations.dir",
                "migrations.dir",
                format!("cannot read migrations dir {}: {e}", dir.display()),
                Some("the path is relative to the blueprint file".into()),
            )),
            Ok(rd) => {
                let mut scripts: Vec<PathBuf> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
                    .collect();
                scripts.sort();
                for s in scripts {
                    let name = s
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("")
                        .to_string();
                    let step = name
                        .strip_prefix('v')
                        .and_then(|n| n.strip_suffix(".rhai"))
                        .and_then(|n| n.parse::<u32>().ok());
                    match step {
                        None => out.push(finding(
                            "migrations.script-name",
                            "migrations.dir",
                            format!("migration script `{name}` is not named v<N>.rhai"),
                            Some("name each script for the version it migrates to: v2.rhai migrates state from version 1 to 2".into()),
                        )),
                        Some(n) if n < 2 || n > bp.metadata.version => out.push(finding(
                            "migrations.script-version",
                            "metadata.version",
                            format!("migration script `{name}` is for version {n}, but this blueprint is version {}", bp.metadata.version),
                            Some(match bp.metadata.version {
                                0 | 1 => "at version 1 no migration applies; raise metadata.version or remove the script".to_string(),
                                2 => "only v2.rhai applies (vN migrates state from N-1 to N); raise metadata.version or remove the script".to_string(),
                                v => format!("v2.rhai to v{v}.rhai apply (vN migrates state from N-1 to N); raise metadata.version or remove the script"),
                            }),
                        )),
                        Some(_) => compile(&s, diags),
                    }
                }
            }
        }
    }
    if let Some(inf) = &bp.inference {
        for (i, g) in inf.guards.iter().enumerate() {
            let file = base.join(&g.script);
            if file.is_file() {
                compile(&file, diags);
            } else {
                out.push(finding(
                    "inference.guard",
                    &format!("inference.guards[{i}].script"),
                    format!("guard script {} does not exist", file.display()),
                    Some("the path is relative to the blueprint file".into()),
                ));
            }
        }
        for (i, b) in inf.backends.iter().enumerate() {
            if let (BackendKind::Mock, Some(replies)) =
                (b.kind, b.mock.as_ref().and_then(|m| m.replies.as_ref()))
            {
                if !base.join(replies).is_file() {
                    out.push(finding(
                        "inference.mock-replies",
                        &format!("inference.backends[{i}].mock.replies"),
                        format!(
                            "scripted replies file {} does not exist",
                            base.join(replies).display()
                        ),
                        Some("the path is relative to the blueprint file".into()),
                    ));
                }
            }
        }
    }
    out
}

/// Unique names across the source; `dependsOn` names exist and form no cycle. Returns the
/// indexes of the blueprints these checks found at fault.
fn cross_file_checks(
    parsed: &[(Entry, bool)],
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeSet<usize> {
    let entries: Vec<&Entry> = parsed.iter().map(|(e, _)| e).collect();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    let mut dup = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let name = e.blueprint.metadata.name.clone();
        if let Some(&first) = by_name.get(&name) {
            dup.push((i, first));
        } else {
            by_name.insert(name, i);
        }
    }
    let mut bad = BTreeSet::new();
    for (i, first) in dup {
        let e = entries[i];
        let mut d = Diagnostic::error(
            &e.path,
            "name.duplicate",
            format!(
                "name `{}` is already used by {}",
                e.blueprint.metadata.name,
                entries[first].path.display()
            ),
        )
        .hint("sandbox names are unique across the source: rename one of them");
        d.field = Some("metadata.name".into());
        if let Some(p) = SourceMap::build(&e.text).value("metadata.name") {
            d = d.at(p.line, p.column);
        }
        diagnostics.push(d);
        bad.insert(i);
    }
    let names: BTreeSet<&str> = by_name.keys().map(String::as_str).collect();
    for (i, e) in entries.iter().enumerate() {
        for (j, dep) in e.blueprint.depends_on.iter().enumerate() {
            if dep != &e.blueprint.metadata.name && !names.contains(dep.as_str()) {
                let mut d = Diagnostic::error(
                    &e.path,
                    "depends.unknown",
                    format!("depends on `{dep}`, which no blueprint in the source defines"),
                );
                d.hint = Some(match did_you_mean(dep, names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "dependsOn names other blueprints' metadata.name".into(),
                });
                let field = format!("dependsOn[{j}]");
                if let Some(p) = SourceMap::build(&e.text).value(&field) {
                    d = d.at(p.line, p.column);
                }
                d.field = Some(field);
                diagnostics.push(d);
                bad.insert(i);
            }
        }
    }
    for cycle in find_cycles(&entries, &by_name) {
        let first = cycle[0];
        let e = entries[first];
        let names: Vec<&str> = cycle
            .iter()
            .chain(std::iter::once(&first))
            .map(|&k| entries[k].blueprint.metadata.name.as_str())
            .collect();
        let mut d = Diagnostic::error(
            &e.path,
            "depends.cycle",
            format!("dependsOn forms a cycle: {}", names.join(" -> ")),
        )
        .hint("remove one of the dependencies so the sandboxes can start in some order");
        if let Some(p) = SourceMap::build(&e.text).value("dependsOn") {
            d = d.at(p.line, p.column);
        }
        d.field = Some("dependsOn".into());
        diagnostics.push(d);
        bad.extend(cycle);
    }
    bad
}

/// Finds dependency cycles (each reported once, as the list of blueprint indexes in order).
fn find_cycles(entries: &[&Entry], by_name: &BTreeMap<String, usize>) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        n: usize,
        entries: &[&Entry],
        by_name: &BTreeMap<String, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
    ) {
        marks[n] = Mark::Active;
        stack.push(n);
        for dep in &entries[n].blueprint.depends_on {
            let Some(&m) = by_name.get(dep) else { continue };
            if m == n {
                continue; // a self-dependency is reported by the per-blueprint check
            }
            match marks[m] {
                Mark::New => visit(m, entries, by_name, marks, stack, out),
                Mark::Active => {
                    let start = stack
                        .iter()
                        .position(|&k| k == m)
                        .expect("active nodes are on the stack");
                    out.push(stack[start..].to_vec());
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[n] = Mark::Done;
    }
    let mut marks = vec![Mark::New; entries.len()];
    let mut out = Vec::new();
    for n in 0..entries.len() {
        if marks[n] == Mark::New {
            visit(n, entries, by_name, &mut marks, &mut Vec::new(), &mut out);
        }
    }
    out
}
