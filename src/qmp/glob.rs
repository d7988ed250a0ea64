//! Glob expansion for `--qmp` patterns, done by the daemon itself so that quoted patterns work
//! and are re-expanded as QEMUs come and go. Wildcards (`*`, `?`, `[...]`) may appear in any
//! path component; as in a shell, they do not match `/` and a leading `.` must be matched
//! explicitly.
//!
//! [`Glob`] remembers its last expansion and every directory that expansion depended on, with
//! its modification time: while none of them changed, a rescan reuses the result and touches
//! nothing but `stat`, so the daemon's steady state allocates nothing (reading directories
//! does: nix copies each entry's name).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// Longest path expansion builds (PATH_MAX).
const PATH_MAX: usize = 4096;

/// True if `pattern` contains a wildcard.
pub fn has_wildcard(pattern: &[u8]) -> bool {
    pattern.iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// fnmatch(3)-style matching of one path component: `*` any run, `?` one byte, `[abc]`,
/// `[a-z]`, `[!a]` / `[^a]` classes, `\` escapes the next byte.
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative matching with one backtrack point for the last `*`: linear in practice,
    // never exponential.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, n));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match_class(pattern, p, name[n]),
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == name[n]).then_some(p + 2),
            Some(&c) => (c == name[n]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                n += 1;
            }
            (None, Some((after_star, from))) => {
                p = after_star;
                n = from + 1;
                star = Some((after_star, from + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[open]` (`[`); returns the index after
/// the class on a match. A `[` without a closing `]` matches itself.
fn match_class(pattern: &[u8], open: usize, c: u8) -> Option<usize> {
    let mut i = open + 1;
    let negated = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while let Some(&lo) = pattern.get(i) {
        if lo == b']' && !first {
            return (hit != negated).then_some(i + 1);
        }
        first = false;
        match (pattern.get(i + 1), pattern.get(i + 2)) {
            (Some(b'-'), Some(&hi)) if hi != b']' => {
                hit |= (lo..=hi).contains(&c);
                i += 3;
            }
            _ => {
                hit |= lo == c;
                i += 1;
            }
        }
    }
    // Unterminated class: the `[` is a literal.
    (c == b'[').then_some(open + 1)
}

/// A directory's modification time can be this coarse (kernel timestamps follow the tick);
/// a cached expansion is trusted only for directories unchanged for longer than this before
/// it was made, so that a change within the same tick cannot hide behind an equal mtime.
const MTIME_GRANULARITY: Duration = Duration::from_secs(1);

/// A pattern with its last expansion.
pub struct Glob {
    pattern: String,
    matches: Vec<PathBuf>,
    /// Every directory the last expansion read or looked into, with its mtime then.
    depends_on: Vec<(PathBuf, Option<SystemTime>)>,
    expanded_at: Option<SystemTime>,
}

fn mtime(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir).and_then(|m| m.modified()).ok()
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob { pattern: pattern.to_owned(), matches: Vec::new(), depends_on: Vec::new(), expanded_at: None }
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The paths matching now, re-reading directories only if one of them changed.
    pub fn matches(&mut self) -> &[PathBuf] {
        if !self.still_valid() {
            let now = SystemTime::now();
            self.matches.clear();
            self.depends_on.clear();
            let Glob { pattern, matches, depends_on, .. } = self;
            expand_tracking(pattern, &mut |p| matches.push(p.to_owned()), &mut |dir| {
                depends_on.push((dir.to_owned(), mtime(dir)));
            });
            self.expanded_at = Some(now);
        }
        &self.matches
    }

    fn still_valid(&self) -> bool {
        let Some(expanded_at) = self.expanded_at else { return false };
        self.depends_on.iter().all(|(dir, then)| {
            let settled = then.is_none_or(|t| t + MTIME_GRANULARITY < expanded_at);
            settled && mtime(dir) == *then
        })
    }
}

/// Calls `found` with every existing path that matches `pattern`, in directory order.
/// A pattern without wildcards is passed through if the path exists.
pub fn expand(pattern: &str, found: &mut dyn FnMut(&Path)) {
    expand_tracking(pattern, found, &mut |_| {});
}

/// [`expand`], also calling `depends(dir)` for every directory whose entries decide the result.
fn expand_tracking(pattern: &str, found: &mut dyn FnMut(&Path), depends: &mut dyn FnMut(&Path)) {
    let mut buf = [0u8; PATH_MAX];
    let bytes = pattern.as_bytes();
    let (start, rest) = match bytes.strip_prefix(b"/") {
        Some(rest) => {
            buf[0] = b'/';
            (1, rest)
        }
        None => (0, bytes),
    };
    walk(&mut buf, start, rest, found, depends);
}

fn walk(
    buf: &mut [u8; PATH_MAX],
    len: usize,
    rest: &[u8],
    found: &mut dyn FnMut(&Path),
    depends: &mut dyn FnMut(&Path),
) {
    // Skip empty components ("a//b", trailing "/").
    let rest = trim_slashes(rest);
    if rest.is_empty() {
        let path = Path::new(OsStr::from_bytes(&buf[..len]));
        if len > 0 {
            // Whether it exists is decided by its parent's entries.
            depends(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")));
            if std::fs::symlink_metadata(path).is_ok() {
                found(path);
            }
        }
        return;
    }
    let (component, remaining) = match rest.iter().position(|&b| b == b'/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    if !has_wildcard(component) {
        if let Some(end) = append(buf, len, component) {
            walk(buf, end, remaining, found, depends);
        }
        return;
    }
    let dir_path = if len == 0 { Path::new(".") } else { Path::new(OsStr::from_bytes(&buf[..len])) };
    depends(dir_path);
    let Ok(mut dir) = Dir::open(dir_path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
    else {
        return;
    };
    for entry in dir.iter().flatten() {
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." || (name.starts_with(b".") && !component.starts_with(b".")) {
            continue;
        }
        if let Some(end) = matches(component, name).then(|| append(buf, len, name)).flatten() {
            walk(buf, end, remaining, found, depends);
        }
    }
}

fn trim_slashes(mut s: &[u8]) -> &[u8] {
    while let Some(rest) = s.strip_prefix(b"/") {
        s = rest;
    }
    s
}

/// Appends `/component` (no slash after the root) to `buf[..len]`; `None` if too long.
fn append(buf: &mut [u8; PATH_MAX], len: usize, component: &[u8]) -> Option<usize> {
    let sep = usize::from(len > 0 && buf[len - 1] != b'/');
    let end = len.checked_add(sep)?.checked_add(component.len()).filter(|&e| e <= PATH_MAX)?;
    if sep == 1 {
        buf[len] = b'/';
    }
    buf[len + sep..end].copy_from_slice(component);
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_fnmatch() {
        assert!(matches(b"*.sock", b"vm1.sock"));
        assert!(matches(b"*.sock", b".sock"));
        assert!(!matches(b"*.sock", b"vm1.sock.bak"));
        assert!(matches(b"vm?.sock", b"vm7.sock"));
        assert!(!matches(b"vm?.sock", b"vm10.sock"));
        assert!(matches(b"vm[0-9][0-9].sock", b"vm10.sock"));
        assert!(matches(b"vm[!0-9].sock", b"vmx.sock"));
        assert!(!matches(b"vm[!0-9].sock", b"vm1.sock"));
        assert!(matches(b"a*b*c", b"aXXbYYbZZc"));
        assert!(!matches(b"a*b*c", b"aXXbYYbZZ"));
        assert!(matches(b"\\*", b"*"));
        assert!(!matches(b"\\*", b"x"));
        assert!(matches(b"[", b"["));
        assert!(matches(b"[]]", b"]"));
        assert!(matches(b"*", b""));
        assert!(!matches(b"", b"x"));
    }

    #[test]
    fn expansion_walks_wildcards_in_any_component() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["a/vm1.sock", "a/vm2.sock", "a/notes.txt", "b/vm3.sock", "a/.hidden.sock"] {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let collect = |pattern: &str| {
            let mut v = Vec::new();
            expand(pattern, &mut |p| v.push(p.strip_prefix(dir.path()).unwrap().to_string_lossy().into_owned()));
            v.sort();
            v
        };
        let root = dir.path().display();
        assert_eq!(collect(&format!("{root}/a/*.sock")), ["a/vm1.sock", "a/vm2.sock"]);
        assert_eq!(collect(&format!("{root}/*/vm*.sock")), ["a/vm1.sock", "a/vm2.sock", "b/vm3.sock"]);
        assert_eq!(collect(&format!("{root}/a/.*.sock")), ["a/.hidden.sock"]);
        assert_eq!(collect(&format!("{root}/b/vm3.sock")), ["b/vm3.sock"]);
        assert!(collect(&format!("{root}/c/*.sock")).is_empty());
        assert!(collect(&format!("{root}/a/missing.sock")).is_empty());
    }

    #[test]
    fn a_cached_expansion_is_redone_when_a_directory_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = Glob::new(&format!("{}/*.sock", dir.path().display()));
        assert!(g.matches().is_empty());
        std::fs::write(dir.path().join("a.sock"), "").unwrap();
        assert_eq!(g.matches().len(), 1, "a directory changed within the last second is always re-read");
        std::fs::remove_file(dir.path().join("a.sock")).unwrap();
        assert!(g.matches().is_empty());
    }

    #[test]
    fn an_old_unchanged_directory_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.sock"), "").unwrap();
        // Age the directory, as if the sockets had been there for a while.
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::open(dir.path()).unwrap().set_modified(old).unwrap();
        let mut g = Glob::new(&format!("{}/*.sock", dir.path().display()));
        assert_eq!(g.matches().len(), 1);
        assert!(g.still_valid(), "an unchanged old directory keeps the cache");
        std::fs::write(dir.path().join("b.sock"), "").unwrap();
        assert!(!g.still_valid());
        assert_eq!(g.matches().len(), 2);
    }
}
