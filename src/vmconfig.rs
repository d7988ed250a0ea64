//! Which VMs are served, and within which limits: `--domains` / `--exclude` globs from the
//! command line and the per-VM configuration file (`--config`, JSON).
//!
//! Everything here that allocates runs at start and on SIGHUP: reading, parsing and checking
//! the file. What runs each round, [`VmRules::verdict`], matches a name against the patterns
//! kept from then, with `fnmatch`-style matching that allocates nothing.
//!
//! The file (README "Configure per VM"):
//!
//! ```json
//! {
//!   "defaults": { "min_mib": 512, "weight": 1 },
//!   "vms": [
//!     { "name": "db-*",     "min_mib": 2048, "max_mib": 16384, "weight": 10 },
//!     { "name": "build?",   "max_mib": 4096 },
//!     { "name": "appliance", "exclude": true }
//!   ]
//! }
//! ```
//!
//! An entry's `name` is a VM name or a glob (`*`, `?`, `[...]`); the first entry that matches a
//! VM applies to it, whole, and what it leaves out comes from `defaults`. JSON rather than
//! TOML: `serde_json` is already a dependency, and a TOML parser would be a new one for a file
//! of a few lines.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::policy::{MAX_KIB, MAX_WEIGHT, VmLimits};
use crate::qmp::glob;
use crate::units::{KIB_PER_MIB, mib_to_kib};

/// A configuration file larger than this is refused: it is a mistake, not a configuration.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Longest pattern accepted (bytes), from the command line or the file. Names are compared as
/// the backends report them, cut at 64 bytes (`VmName`); longer patterns can still be useful
/// with a trailing `*`, but not kilobytes of them.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// Most entries in one file: each VM's verdict scans them in order.
pub const MAX_ENTRIES: usize = 4096;

/// Largest `min_mib` / `max_mib`: the policy clamps every figure to `MAX_KIB` (1 PiB).
pub const MAX_SIZE_MIB: u64 = MAX_KIB / KIB_PER_MIB;

/// The fields an entry may have, for the message about an unknown one.
const ENTRY_FIELDS: &str = "name, min_mib, max_mib, weight, exclude";

/// What an entry (or `defaults`) sets; `None` leaves it to the next level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Settings {
    min_kib: Option<u64>,
    max_kib: Option<u64>,
    weight: Option<u32>,
    exclude: Option<bool>,
}

/// One `vms[]` entry of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    pattern: String,
    settings: Settings,
}

/// The parsed, checked configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct VmFile {
    path: PathBuf,
    defaults: Settings,
    entries: Vec<Entry>,
}

/// The rules the coordinator applies to each VM by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmRules {
    /// `--domains`: when any is given, only VMs matching one of them are served.
    domains: Vec<String>,
    /// `--exclude`: VMs matching any of them are not served.
    exclude: Vec<String>,
    /// `--config`: where the file is, and what it said when it was last loaded.
    config_path: Option<PathBuf>,
    file: Option<VmFile>,
}

/// Which rule decided a verdict, for the log line that explains it. Indices, so that a
/// verdict is `Copy` and costs nothing to keep per slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Nothing in the rules names this VM.
    Default,
    /// It matches none of the `--domains` patterns.
    NotInDomains,
    /// `--exclude` pattern number `i`.
    ExcludeFlag(usize),
    /// The file's `defaults`.
    FileDefaults,
    /// The file's `vms[i]`.
    FileEntry(usize),
}

/// What the rules say about one VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Served, within these limits.
    Served(VmLimits, Rule),
    /// Left alone.
    Excluded(Rule),
}

impl Verdict {
    pub fn is_excluded(self) -> bool {
        matches!(self, Verdict::Excluded(_))
    }
}

impl VmRules {
    /// Checks the command-line patterns and loads the file, if any. Every problem is an
    /// error naming the flag, or the file, the entry and the field.
    pub fn new(
        domains: Vec<String>,
        exclude: Vec<String>,
        config_path: Option<PathBuf>,
    ) -> Result<VmRules, VmConfigError> {
        for (flag, patterns) in [("--domains", &domains), ("--exclude", &exclude)] {
            for p in patterns {
                if let Some(problem) = pattern_problem(p) {
                    return Err(VmConfigError::Flag { flag, problem });
                }
            }
        }
        let file = config_path.as_deref().map(VmFile::load).transpose()?;
        Ok(VmRules { domains, exclude, config_path, file })
    }

    /// The configuration file, if one was given.
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// Number of entries in the loaded file.
    pub fn entries(&self) -> usize {
        self.file.as_ref().map_or(0, |f| f.entries.len())
    }

    /// The same rules with the file read again (SIGHUP). `None` without a file; on `Err` the
    /// caller keeps `self`.
    pub fn reloaded(&self) -> Option<Result<VmRules, VmConfigError>> {
        let path = self.config_path.as_deref()?;
        Some(VmFile::load(path).map(|file| VmRules { file: Some(file), ..self.clone() }))
    }

    /// The verdict for the VM called `name`. Allocates nothing.
    ///
    /// Every source can only exclude: a VM is served when it matches a `--domains` pattern
    /// (or none is given), matches no `--exclude` pattern, and the file does not exclude it.
    /// Its limits come from the first file entry that matches it, then the file's defaults.
    pub fn verdict(&self, name: &str) -> Verdict {
        let name = name.as_bytes();
        if !self.domains.is_empty() && !self.domains.iter().any(|p| glob::matches(p.as_bytes(), name)) {
            return Verdict::Excluded(Rule::NotInDomains);
        }
        if let Some(i) = self.exclude.iter().position(|p| glob::matches(p.as_bytes(), name)) {
            return Verdict::Excluded(Rule::ExcludeFlag(i));
        }
        let Some(file) = &self.file else { return Verdict::Served(VmLimits::DEFAULT, Rule::Default) };
        let entry = file.entries.iter().position(|e| glob::matches(e.pattern.as_bytes(), name));
        let (own, rule) = match entry {
            Some(i) => (file.entries[i].settings, Rule::FileEntry(i)),
            None => (Settings::default(), Rule::FileDefaults),
        };
        let d = file.defaults;
        if own.exclude.or(d.exclude).unwrap_or(false) {
            // Say which level excluded it: the entry's own `exclude`, or the defaults'.
            return Verdict::Excluded(if own.exclude.is_some() { rule } else { Rule::FileDefaults });
        }
        let limits = VmLimits {
            min_kib: own.min_kib.or(d.min_kib),
            max_kib: own.max_kib.or(d.max_kib),
            weight: own.weight.or(d.weight).unwrap_or(VmLimits::DEFAULT.weight),
        };
        Verdict::Served(limits, rule)
    }

    /// Describes `rule` for a log line, e.g. `--exclude 'test-*'` or
    /// `/etc/memory-coordinator/vms.json vms[2] ('db-*')`.
    pub fn describe(&self, rule: Rule) -> RuleText<'_> {
        RuleText { rules: self, rule }
    }
}

/// A rule as the log names it (see [`VmRules::describe`]).
pub struct RuleText<'a> {
    rules: &'a VmRules,
    rule: Rule,
}

impl fmt::Display for RuleText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.rules.file.as_ref();
        let path = || file.map_or_else(|| Path::new("(no file)").display(), |f| f.path.display());
        match self.rule {
            Rule::Default => f.write_str("the defaults"),
            Rule::NotInDomains => write!(f, "--domains (it matches none of {:?})", self.rules.domains),
            Rule::ExcludeFlag(i) => write!(f, "--exclude '{}'", self.rules.exclude.get(i).map_or("?", String::as_str)),
            Rule::FileDefaults => write!(f, "{} defaults", path()),
            Rule::FileEntry(i) => {
                let pattern = file.and_then(|f| f.entries.get(i)).map_or("?", |e| e.pattern.as_str());
                write!(f, "{} vms[{i}] ('{pattern}')", path())
            }
        }
    }
}

impl VmFile {
    fn load(path: &Path) -> Result<VmFile, VmConfigError> {
        let read_error = |reason: String| VmConfigError::Read { path: path.to_owned(), reason };
        let meta = std::fs::metadata(path).map_err(|e| read_error(e.to_string()))?;
        if !meta.is_file() {
            return Err(read_error("not a regular file".to_owned()));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(read_error(format!("{} bytes; a configuration file is at most {MAX_FILE_BYTES}", meta.len())));
        }
        let text = std::fs::read_to_string(path).map_err(|e| read_error(e.to_string()))?;
        VmFile::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<VmFile, VmConfigError> {
        let invalid = |at: String, problem: String| VmConfigError::Invalid { path: path.to_owned(), at, problem };
        let top: Value = serde_json::from_str(text)
            .map_err(|e| VmConfigError::Syntax { path: path.to_owned(), reason: e.to_string() })?;
        let top = match top {
            Value::Object(top) => top,
            other => {
                let problem = format!("expected an object with \"defaults\" and \"vms\", found {}", kind(&other));
                return Err(invalid("the top level".to_owned(), problem));
            }
        };
        let mut file = VmFile { path: path.to_owned(), defaults: Settings::default(), entries: Vec::new() };
        for (key, value) in &top {
            match key.as_str() {
                "defaults" => {
                    let Value::Object(fields) = value else {
                        return Err(invalid(
                            "defaults".to_owned(),
                            format!("expected an object, found {}", kind(value)),
                        ));
                    };
                    if fields.contains_key("name") {
                        return Err(invalid(
                            "defaults".to_owned(),
                            "\"name\" belongs in a vms[] entry, not in defaults".to_owned(),
                        ));
                    }
                    file.defaults = settings(fields).map_err(|p| invalid("defaults".to_owned(), p))?;
                }
                "vms" => {
                    let Value::Array(entries) = value else {
                        return Err(invalid(
                            "vms".to_owned(),
                            format!("expected an array of entries, found {}", kind(value)),
                        ));
                    };
                    if entries.len() > MAX_ENTRIES {
                        return Err(invalid(
                            "vms".to_owned(),
                            format!("{} entries; at most {MAX_ENTRIES}", entries.len()),
                        ));
                    }
                    for (i, entry) in entries.iter().enumerate() {
                        let entry = parse_entry(entry).map_err(|(name, problem)| {
                            invalid(name.map_or_else(|| format!("vms[{i}]"), |n| format!("vms[{i}] ({n:?})")), problem)
                        })?;
                        if let Some(j) = file.entries.iter().position(|e| e.pattern == entry.pattern) {
                            return Err(invalid(
                                format!("vms[{i}] ({:?})", entry.pattern),
                                format!("repeats the name of vms[{j}]; only the first entry that matches a VM applies"),
                            ));
                        }
                        file.entries.push(entry);
                    }
                }
                other => {
                    return Err(invalid(
                        format!("key {other:?}"),
                        "unknown (expected \"defaults\" or \"vms\")".to_owned(),
                    ));
                }
            }
        }
        let d = file.defaults;
        // An entry that sets only one bound must fit the other bound of the defaults.
        for (i, e) in file.entries.iter().enumerate() {
            if let (Some(min), Some(max)) = (e.settings.min_kib.or(d.min_kib), e.settings.max_kib.or(d.max_kib))
                && min > max
            {
                let whose = |own: Option<u64>| if own.is_some() { "" } else { " (from defaults)" };
                return Err(invalid(
                    format!("vms[{i}] ({:?})", e.pattern),
                    format!(
                        "min_mib {}{} is above max_mib {}{}",
                        min / KIB_PER_MIB,
                        whose(e.settings.min_kib),
                        max / KIB_PER_MIB,
                        whose(e.settings.max_kib)
                    ),
                ));
            }
        }
        Ok(file)
    }
}

/// Parses one `vms[]` entry; on error, the entry's name if it had a usable one, and the problem.
fn parse_entry(value: &Value) -> Result<Entry, (Option<String>, String)> {
    let Value::Object(fields) = value else {
        return Err((
            None,
            format!("expected an object like {{\"name\": \"db-*\", \"max_mib\": 4096}}, found {}", kind(value)),
        ));
    };
    let pattern = match fields.get("name") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err((None, format!("name must be a string (a VM name or a glob), not {}", kind(other)))),
        None => return Err((None, "name is missing (a VM name or a glob such as \"db-*\")".to_owned())),
    };
    if let Some(problem) = pattern_problem(&pattern) {
        return Err((None, format!("name {problem}")));
    }
    let settings = settings(fields).map_err(|p| (Some(pattern.clone()), p))?;
    Ok(Entry { pattern, settings })
}

/// Reads the fields shared by entries and defaults; `name` is checked by the caller.
fn settings(fields: &Map<String, Value>) -> Result<Settings, String> {
    let mut s = Settings::default();
    for (key, value) in fields {
        match key.as_str() {
            "name" => {}
            "min_mib" => s.min_kib = Some(mib_to_kib(size_mib(key, value)?)),
            "max_mib" => s.max_kib = Some(mib_to_kib(size_mib(key, value)?)),
            "weight" => {
                let w = value.as_u64().filter(|w| (1..=u64::from(MAX_WEIGHT)).contains(w));
                let w = w
                    .and_then(|w| u32::try_from(w).ok())
                    .ok_or_else(|| format!("weight must be a whole number from 1 to {MAX_WEIGHT}, not {value}"))?;
                s.weight = Some(w);
            }
            "exclude" => {
                s.exclude = Some(value.as_bool().ok_or_else(|| format!("exclude must be true or false, not {value}"))?);
            }
            other => return Err(format!("unknown field {other:?} (the fields are {ENTRY_FIELDS})")),
        }
    }
    if let (Some(min), Some(max)) = (s.min_kib, s.max_kib)
        && min > max
    {
        return Err(format!("min_mib {} is above max_mib {}", min / KIB_PER_MIB, max / KIB_PER_MIB));
    }
    Ok(s)
}

fn size_mib(key: &str, value: &Value) -> Result<u64, String> {
    value
        .as_u64()
        .filter(|mib| (1..=MAX_SIZE_MIB).contains(mib))
        .ok_or_else(|| format!("{key} must be a whole number of MiB from 1 to {MAX_SIZE_MIB}, not {value}"))
}

/// Why `pattern` cannot be used, if it cannot.
fn pattern_problem(pattern: &str) -> Option<String> {
    if pattern.is_empty() {
        Some("must not be empty (a VM name or a glob such as 'web-*')".to_owned())
    } else if pattern.len() > MAX_PATTERN_BYTES {
        Some(format!("is {} bytes long; at most {MAX_PATTERN_BYTES}", pattern.len()))
    } else if pattern.contains('\0') {
        Some("must not contain a NUL byte".to_owned())
    } else {
        None
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Errors of this module: rules the daemon cannot run with. Strings, not `io::Error`, so the
/// validated configuration stays `Clone` and comparable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmConfigError {
    /// A `--domains` or `--exclude` pattern that cannot be used.
    Flag { flag: &'static str, problem: String },
    /// The file cannot be read.
    Read { path: PathBuf, reason: String },
    /// The file is not JSON.
    Syntax { path: PathBuf, reason: String },
    /// The file is JSON, but an entry or a field is wrong.
    Invalid { path: PathBuf, at: String, problem: String },
}

impl fmt::Display for VmConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag { flag, problem } => write!(f, "{flag}: the pattern {problem}"),
            Self::Read { path, reason } => {
                write!(f, "cannot read the VM configuration file {}: {reason}", path.display())
            }
            Self::Syntax { path, reason } => write!(f, "{}: not valid JSON: {reason}", path.display()),
            Self::Invalid { path, at, problem } => write!(f, "{}: {at}: {problem}", path.display()),
        }
    }
}

impl std::error::Error for VmConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<VmRules, VmConfigError> {
        let file = VmFile::parse(Path::new("/etc/vms.json"), text)?;
        Ok(VmRules { file: Some(file), config_path: Some("/etc/vms.json".into()), ..VmRules::default() })
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    fn limits(min_mib: Option<u64>, max_mib: Option<u64>, weight: u32) -> VmLimits {
        VmLimits { min_kib: min_mib.map(mib_to_kib), max_kib: max_mib.map(mib_to_kib), weight }
    }

    #[test]
    fn without_rules_every_vm_is_served_with_default_limits() {
        let rules = VmRules::new(vec![], vec![], None).unwrap();
        assert_eq!(rules.verdict("anything"), Verdict::Served(VmLimits::DEFAULT, Rule::Default));
    }

    #[test]
    fn domains_select_and_exclude_removes_by_glob() {
        let rules = VmRules::new(vec!["web-*".into(), "db[0-9]".into()], vec!["web-test?".into()], None).unwrap();
        assert!(!rules.verdict("web-1").is_excluded());
        assert!(!rules.verdict("db7").is_excluded());
        assert_eq!(rules.verdict("db10"), Verdict::Excluded(Rule::NotInDomains));
        assert_eq!(rules.verdict("mail"), Verdict::Excluded(Rule::NotInDomains));
        assert_eq!(rules.verdict("web-test1"), Verdict::Excluded(Rule::ExcludeFlag(0)));
        assert!(!rules.verdict("web-test10").is_excluded(), "? is exactly one character");
        assert_eq!(rules.describe(Rule::ExcludeFlag(0)).to_string(), "--exclude 'web-test?'");
    }

    #[test]
    fn the_first_matching_entry_applies_whole_and_defaults_fill_the_rest() {
        let rules = parse(
            r#"{"defaults": {"min_mib": 512, "weight": 2},
                "vms": [{"name": "db-1", "max_mib": 8192},
                        {"name": "db-*", "min_mib": 1024, "max_mib": 4096, "weight": 10},
                        {"name": "scratch", "exclude": true}]}"#,
        )
        .unwrap();
        assert_eq!(rules.verdict("db-1"), Verdict::Served(limits(Some(512), Some(8192), 2), Rule::FileEntry(0)));
        assert_eq!(rules.verdict("db-2"), Verdict::Served(limits(Some(1024), Some(4096), 10), Rule::FileEntry(1)));
        assert_eq!(rules.verdict("web"), Verdict::Served(limits(Some(512), None, 2), Rule::FileDefaults));
        assert_eq!(rules.verdict("scratch"), Verdict::Excluded(Rule::FileEntry(2)));
        assert_eq!(rules.describe(Rule::FileEntry(1)).to_string(), "/etc/vms.json vms[1] ('db-*')");
    }

    #[test]
    fn excluded_by_default_serves_only_the_entries_that_say_so() {
        let rules =
            parse(r#"{"defaults": {"exclude": true}, "vms": [{"name": "prod-*", "exclude": false}, {"name": "x"}]}"#)
                .unwrap();
        assert!(!rules.verdict("prod-a").is_excluded());
        assert_eq!(rules.verdict("x"), Verdict::Excluded(Rule::FileDefaults), "x sets no exclude of its own");
        assert_eq!(rules.verdict("dev"), Verdict::Excluded(Rule::FileDefaults));
    }

    #[test]
    fn command_line_exclusions_win_over_the_file() {
        let mut rules = VmRules::new(vec![], vec!["db-9".into()], None).unwrap();
        rules.file = parse(r#"{"vms": [{"name": "db-*", "weight": 5}]}"#).unwrap().file;
        assert_eq!(rules.verdict("db-9"), Verdict::Excluded(Rule::ExcludeFlag(0)));
        assert!(!rules.verdict("db-1").is_excluded());
    }

    #[test]
    fn errors_name_the_file_the_entry_and_the_field() {
        assert_eq!(
            err(r#"{"vms": [{"name": "a"}, {"name": "db-*", "min_mib": "lots"}]}"#),
            "/etc/vms.json: vms[1] (\"db-*\"): min_mib must be a whole number of MiB from 1 to 1073741824, not \"lots\""
        );
        assert_eq!(
            err(r#"{"vms": [{"name": "db", "max_mb": 10}]}"#),
            "/etc/vms.json: vms[0] (\"db\"): unknown field \"max_mb\" (the fields are name, min_mib, max_mib, weight, exclude)"
        );
        assert_eq!(
            err(r#"{"vms": [{"name": "db", "weight": 0}]}"#),
            "/etc/vms.json: vms[0] (\"db\"): weight must be a whole number from 1 to 1000, not 0"
        );
        assert!(err(r#"{"vms": [{"name": "db", "weight": 1001}]}"#).contains("not 1001"));
        assert!(err(r#"{"vms": [{"name": "db", "min_mib": -5}]}"#).contains("min_mib must be a whole number of MiB"));
        assert!(err(r#"{"vms": [{"name": "db", "max_mib": 1.5}]}"#).contains("not 1.5"));
        assert!(err(r#"{"vms": [{"name": "db", "max_mib": 0}]}"#).contains("not 0"));
        assert_eq!(
            err(r#"{"vms": [{"name": "db", "min_mib": 4096, "max_mib": 2048}]}"#),
            "/etc/vms.json: vms[0] (\"db\"): min_mib 4096 is above max_mib 2048"
        );
        assert_eq!(
            err(r#"{"defaults": {"min_mib": 4096}, "vms": [{"name": "db", "max_mib": 2048}]}"#),
            "/etc/vms.json: vms[0] (\"db\"): min_mib 4096 (from defaults) is above max_mib 2048"
        );
        assert_eq!(
            err(r#"{"vms": [{"max_mib": 10}]}"#),
            "/etc/vms.json: vms[0]: name is missing (a VM name or a glob such as \"db-*\")"
        );
        assert!(err(r#"{"vms": [{"name": ""}]}"#).contains("vms[0]: name must not be empty"));
        assert!(err(r#"{"vms": [{"name": 7}]}"#).contains("vms[0]: name must be a string"));
        assert!(
            err(r#"{"vms": [{"name": "db", "exclude": "yes"}]}"#)
                .contains("exclude must be true or false, not \"yes\"")
        );
        assert!(
            err(r#"{"vms": [{"name": "a"}, {"name": "a", "weight": 3}]}"#)
                .contains("vms[1] (\"a\"): repeats the name of vms[0]")
        );
        assert!(err(r#"{"vms": {"name": "a"}}"#).contains("vms: expected an array of entries, found an object"));
        assert!(err(r#"{"vms": ["a"]}"#).contains("vms[0]: expected an object"));
        assert!(err(r#"{"defaults": {"name": "a"}}"#).contains("defaults: \"name\" belongs in a vms[] entry"));
        assert!(err(r#"{"defaults": {"weight": 0}}"#).starts_with("/etc/vms.json: defaults: weight"));
        assert_eq!(err(r#"{"vm": []}"#), "/etc/vms.json: key \"vm\": unknown (expected \"defaults\" or \"vms\")");
        assert!(err("[]").contains("the top level: expected an object"));
        assert!(err("{\"vms\": [").starts_with("/etc/vms.json: not valid JSON: EOF while parsing a list at line 1"));
    }

    #[test]
    fn bad_command_line_patterns_name_the_flag() {
        let e = VmRules::new(vec![String::new()], vec![], None).unwrap_err();
        assert_eq!(e.to_string(), "--domains: the pattern must not be empty (a VM name or a glob such as 'web-*')");
        let e = VmRules::new(vec![], vec!["x".repeat(MAX_PATTERN_BYTES + 1)], None).unwrap_err();
        assert!(e.to_string().starts_with("--exclude: the pattern is 1025 bytes long"), "{e}");
    }

    #[test]
    fn a_missing_or_oversized_file_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let e = VmRules::new(vec![], vec![], Some(missing.clone())).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot read the VM configuration file {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
        let big = dir.path().join("big.json");
        std::fs::write(&big, " ".repeat(usize::try_from(MAX_FILE_BYTES).unwrap() + 1)).unwrap();
        assert!(VmRules::new(vec![], vec![], Some(big)).unwrap_err().to_string().contains("at most 1048576"));
        let e = VmRules::new(vec![], vec![], Some(dir.path().to_owned())).unwrap_err();
        assert!(e.to_string().ends_with("not a regular file"), "{e}");
    }

    #[test]
    fn reloading_reads_the_file_again_and_keeps_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vms.json");
        std::fs::write(&path, r#"{"vms": [{"name": "a", "weight": 3}]}"#).unwrap();
        let rules = VmRules::new(vec![], vec!["b".into()], Some(path.clone())).unwrap();
        std::fs::write(&path, r#"{"vms": [{"name": "a", "weight": 7}]}"#).unwrap();
        let new = rules.reloaded().unwrap().unwrap();
        assert_eq!(new.verdict("a"), Verdict::Served(limits(None, None, 7), Rule::FileEntry(0)));
        assert_eq!(new.verdict("b"), Verdict::Excluded(Rule::ExcludeFlag(0)));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(rules.reloaded(), Some(Err(VmConfigError::Syntax { .. }))));
        assert!(VmRules::default().reloaded().is_none());
    }

    #[test]
    fn the_example_file_in_contrib_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/vms.example.json");
        let rules = VmRules::new(vec![], vec![], Some(path)).unwrap();
        assert!(rules.entries() >= 3);
    }
}
