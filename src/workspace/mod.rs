//! The server's file I/O: files are read only inside the workspace folders
//! (canonicalized, so `../` chains, absolute includes and symlinks that
//! lead elsewhere are refused), regular files only, and never more than a
//! size cap, enforced while reading (procfs and pipes report length 0).
//! Import resolution (which workspace file an import names) is here too:
//! the server and `wick eval real-code` both call it. The open documents
//! (`documents.rs`) and what is derived per file (`kept.rs`) live here too:
//! everything the server knows about files.

pub mod documents;
mod kept;

pub(crate) use kept::PerFile;

use crate::syntax::Lang;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The folders the server may read, canonicalized.
#[derive(Debug, Clone, Default)]
pub(crate) struct Workspace {
    roots: Vec<PathBuf>,
}

impl Workspace {
    /// The folders that exist; the others are left out.
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> Workspace {
        Workspace { roots: roots.into_iter().filter_map(|r| r.canonicalize().ok()).collect() }
    }

    pub(crate) fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The canonical path of `path` and its version stamp (modification
    /// time and length), when it is a regular file inside a root.
    fn file(&self, path: &Path) -> Option<(PathBuf, String)> {
        let real = path.canonicalize().ok()?;
        if !self.roots.iter().any(|r| real.starts_with(r)) {
            return None;
        }
        let meta = real.metadata().ok().filter(|m| m.is_file())?;
        let mtime =
            meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        Some((real, format!("m{mtime}:{}", meta.len())))
    }

    /// The version stamp of a workspace file (cheap: no read).
    pub(crate) fn stamp(&self, path: &Path) -> Option<String> {
        self.file(path).map(|(_, stamp)| stamp)
    }

    /// Reads a workspace file of at most `max_bytes` as UTF-8; None when it
    /// is outside every root, not a regular file, larger, or not text.
    pub fn read(&self, path: &Path, max_bytes: usize) -> Option<String> {
        let (real, _) = self.file(path)?;
        let mut buf = Vec::new();
        std::fs::File::open(&real).ok()?.take(max_bytes as u64 + 1).read_to_end(&mut buf).ok()?;
        if buf.len() > max_bytes {
            return None;
        }
        String::from_utf8(buf).ok()
    }
}

/// A workspace file that an import names.
#[derive(Debug, Clone)]
pub(crate) struct Import {
    pub path: PathBuf,
    /// The path as the prompt shows it (relative to the root).
    pub rel: String,
    /// Its version stamp (see [`Workspace::stamp`]).
    pub stamp: String,
}

impl Workspace {
    /// The workspace files that `imports` (as the syntax tree lists them,
    /// in order) name from the file `current`: for each import, its first
    /// candidate inside the roots. At most `max`, each once.
    pub(crate) fn resolve_imports(
        &self,
        lang: Lang,
        imports: &[String],
        current: &Path,
        root: Option<&Path>,
        max: usize,
    ) -> Vec<Import> {
        let mut out: Vec<Import> = Vec::new();
        for import in imports {
            if out.len() >= max {
                break;
            }
            for cand in import_candidates(lang, import, current, root) {
                if let Some(stamp) = self.stamp(&cand) {
                    let rel = relative(&cand, root);
                    if !out.iter().any(|o| o.rel == rel) {
                        out.push(Import { path: cand, rel, stamp });
                    }
                    break;
                }
            }
        }
        out
    }
}

/// A path as the prompt shows it: relative to the root, or the file's name
/// when there is no root.
pub(crate) fn relative(path: &Path, root: Option<&Path>) -> String {
    match root {
        Some(r) => path.strip_prefix(r).map(|x| x.display().to_string()).unwrap_or_else(|_| path.display().to_string()),
        None => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    }
}

/// Where an import may live, in order of preference.
pub(crate) fn import_candidates(lang: Lang, import: &str, current: &Path, root: Option<&Path>) -> Vec<PathBuf> {
    let dir = current.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let mut bases = vec![dir.clone()];
    if let Some(r) = root {
        bases.push(r.to_path_buf());
        bases.push(r.join("src"));
    }
    (lang.rules().import_candidates)(import, &dir, &bases)
}

/// The statistics file: `$WICK_DATA_DIR/stats.jsonl` if that is set, else
/// `$XDG_DATA_HOME/wick/stats.jsonl`, else `~/.local/share/wick/stats.jsonl`.
pub(crate) fn stats_path() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = var("WICK_DATA_DIR") {
        return Some(d.join("stats.jsonl"));
    }
    let data = var("XDG_DATA_HOME").or_else(|| var("HOME").map(|h| h.join(".local/share")))?;
    Some(data.join("wick").join("stats.jsonl"))
}

/// An append-only file of lines that never grows past `cap` bytes: once
/// over, it is rewritten with its newest lines up to half the cap (through
/// a temporary file and a rename, so a crash leaves the old or the new file,
/// never a mix). What the lines mean is not known here.
#[derive(Debug, Clone)]
pub(crate) struct CappedLog {
    pub path: PathBuf,
    pub cap: u64,
}

/// The statistics file's cap.
pub(crate) const STATS_CAP: u64 = 4 << 20;

impl CappedLog {
    pub fn new(path: PathBuf, cap: u64) -> CappedLog {
        CappedLog { path, cap }
    }

    /// Appends `lines` (each ending in a newline), creating the file and its
    /// directory if needed. A last line cut short (a crash mid-write) is
    /// ended first, so it stays one bad line and never swallows a new one.
    pub(crate) fn append(&self, lines: &str) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        if lines.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new().create(true).read(true).append(true).open(&self.path)?;
        let len = f.metadata()?.len();
        let mut out = String::with_capacity(lines.len() + 1);
        if len > 0 {
            let mut last = [0u8; 1];
            f.seek(SeekFrom::Start(len - 1))?;
            f.read_exact(&mut last)?;
            if last[0] != b'\n' {
                out.push('\n');
            }
        }
        out.push_str(lines);
        f.write_all(out.as_bytes())?;
        if len + out.len() as u64 > self.cap {
            drop(f);
            self.compact()?;
        }
        Ok(())
    }

    /// Keeps the newest whole lines that fit in half the cap.
    fn compact(&self) -> std::io::Result<()> {
        use std::io::Write;
        let text = std::fs::read(&self.path)?;
        let keep = (self.cap / 2) as usize;
        let mut start = text.len().saturating_sub(keep);
        // From the start of a line: a cut line is dropped.
        if start > 0 && text[start - 1] != b'\n' {
            start = text[start..].iter().position(|&b| b == b'\n').map_or(text.len(), |i| start + i + 1);
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text[start..])?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }

    /// The file's text (lossy: a bad byte spoils one line, not the rest);
    /// empty when it does not exist.
    pub fn read(&self) -> std::io::Result<String> {
        match std::fs::read(&self.path) {
            Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_inside_the_roots_and_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let ws_dir = dir.path().join("ws");
        std::fs::create_dir_all(ws_dir.join("src")).unwrap();
        std::fs::write(ws_dir.join("src/a.py"), "def a(): pass\n").unwrap();
        std::fs::write(ws_dir.join("big.py"), "x".repeat(2000)).unwrap();
        std::fs::write(dir.path().join("secret.txt"), "password").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), ws_dir.join("link.py")).unwrap();
        let ws = Workspace::new([ws_dir.clone()]);
        assert_eq!(ws.read(&ws_dir.join("src/a.py"), 1000).unwrap(), "def a(): pass\n");
        assert!(ws.read(&ws_dir.join("src/../src/a.py"), 1000).is_some());
        // Escaping paths, absolute paths elsewhere, symlinks out, directories.
        assert!(ws.read(&ws_dir.join("../secret.txt"), 1000).is_none());
        assert!(ws.read(&dir.path().join("secret.txt"), 1000).is_none());
        assert!(ws.read(Path::new("/etc/passwd"), 100_000).is_none());
        #[cfg(unix)]
        assert!(ws.read(&ws_dir.join("link.py"), 1000).is_none());
        assert!(ws.read(&ws_dir.join("src"), 1000).is_none());
        // Over the cap.
        assert!(ws.read(&ws_dir.join("big.py"), 1000).is_none());
        assert!(ws.read(&ws_dir.join("big.py"), 2000).is_some());
        // A file that reports length 0 but has no end is read to the cap only.
        let proc_ws = Workspace::new([PathBuf::from("/proc/self")]);
        assert!(proc_ws.read(Path::new("/proc/self/status"), 1 << 20).is_some_and(|f| f.len() < 1 << 20));
        // No roots: nothing is readable.
        assert!(Workspace::default().read(&ws_dir.join("src/a.py"), 1000).is_none());
    }

    #[test]
    fn the_capped_log_keeps_the_newest_lines_and_never_exceeds_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let log = CappedLog::new(dir.path().join("sub/stats.jsonl"), 1000);
        assert_eq!(log.read().unwrap(), "", "no file yet: nothing");
        for i in 0..500 {
            log.append(&format!("{{\"n\":{i:04}}}\n")).unwrap();
            let len = std::fs::metadata(&log.path).unwrap().len();
            assert!(len <= 1000, "{len} bytes after line {i}");
        }
        let text = log.read().unwrap();
        assert!(text.ends_with("{\"n\":0499}\n"), "the newest line is kept");
        let lines: Vec<_> = text.lines().collect();
        assert!(lines.iter().all(|l| l.len() == 10 && l.starts_with("{\"n\":")), "only whole lines: {lines:?}");
        let ns: Vec<u32> = lines.iter().map(|l| l[5..9].parse().unwrap()).collect();
        assert!(ns.windows(2).all(|w| w[1] == w[0] + 1), "the newest, in order, none missing: {ns:?}");
        assert!(!dir.path().join("sub/stats.jsonl.tmp").exists());
    }

    #[test]
    fn a_line_cut_short_stays_one_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = CappedLog::new(dir.path().join("stats.jsonl"), 1 << 20);
        std::fs::write(&log.path, "{\"n\":1}\n{\"n\":").unwrap();
        log.append("{\"n\":2}\n").unwrap();
        assert_eq!(log.read().unwrap(), "{\"n\":1}\n{\"n\":\n{\"n\":2}\n");
        // Garbage and a cut line do not stop compaction either: the old
        // lines go, the cut one is ended and kept (a reader skips it).
        let small = CappedLog::new(dir.path().join("small.jsonl"), 64);
        std::fs::write(&small.path, format!("{}\n\u{0}\u{1}garbage", "x".repeat(100))).unwrap();
        small.append("{\"n\":3}\n").unwrap();
        assert_eq!(small.read().unwrap(), "\u{0}\u{1}garbage\n{\"n\":3}\n");
    }

    #[test]
    fn an_unwritable_place_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let log = CappedLog::new(dir.path().join("file/stats.jsonl"), 1000);
        assert!(log.append("x\n").is_err());
    }
}
