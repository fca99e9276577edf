//! The server's file I/O: files are read only inside the workspace folders
//! (canonicalized, so `../` chains, absolute includes and symlinks that
//! lead elsewhere are refused), regular files only, and never more than a
//! size cap, enforced while reading (procfs and pipes report length 0).
//! Import resolution (which workspace file an import names) is here too:
//! the server and `wick eval real-code` both call it.

use crate::syntax::Lang;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The folders the server may read, canonicalized.
#[derive(Debug, Clone, Default)]
pub struct Workspace {
    roots: Vec<PathBuf>,
}

/// A file read from the workspace, with what identifies its version.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    /// Modification time and length: the same stamp, the same text.
    pub stamp: String,
}

impl Workspace {
    /// The folders that exist; the others are left out.
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> Workspace {
        Workspace { roots: roots.into_iter().filter_map(|r| r.canonicalize().ok()).collect() }
    }

    pub fn roots(&self) -> &[PathBuf] {
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
    pub fn stamp(&self, path: &Path) -> Option<String> {
        self.file(path).map(|(_, stamp)| stamp)
    }

    /// Reads a workspace file of at most `max_bytes` as UTF-8; None when it
    /// is outside every root, not a regular file, larger, or not text.
    pub fn read(&self, path: &Path, max_bytes: usize) -> Option<SourceFile> {
        let (real, stamp) = self.file(path)?;
        let mut buf = Vec::new();
        std::fs::File::open(&real).ok()?.take(max_bytes as u64 + 1).read_to_end(&mut buf).ok()?;
        if buf.len() > max_bytes {
            return None;
        }
        Some(SourceFile { path: real, text: String::from_utf8(buf).ok()?, stamp })
    }
}

/// A workspace file that an import names.
#[derive(Debug, Clone)]
pub struct Import {
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
    pub fn resolve_imports(
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
pub fn relative(path: &Path, root: Option<&Path>) -> String {
    match root {
        Some(r) => path.strip_prefix(r).map(|x| x.display().to_string()).unwrap_or_else(|_| path.display().to_string()),
        None => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    }
}

/// Where an import may live, in order of preference.
pub fn import_candidates(lang: Lang, import: &str, current: &Path, root: Option<&Path>) -> Vec<PathBuf> {
    let dir = current.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let mut bases = vec![dir.clone()];
    if let Some(r) = root {
        bases.push(r.to_path_buf());
        bases.push(r.join("src"));
    }
    (lang.rules().import_candidates)(import, &dir, &bases)
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
        assert_eq!(ws.read(&ws_dir.join("src/a.py"), 1000).unwrap().text, "def a(): pass\n");
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
        assert!(proc_ws.read(Path::new("/proc/self/status"), 1 << 20).is_some_and(|f| f.text.len() < 1 << 20));
        // No roots: nothing is readable.
        assert!(Workspace::default().read(&ws_dir.join("src/a.py"), 1000).is_none());
    }
}
