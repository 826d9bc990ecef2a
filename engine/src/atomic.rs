//! Durable, all-or-nothing writes: a file (or a directory tree) is written under a temporary
//! name, fsynced, and renamed into place, and its directory fsynced, so a reader sees either the
//! old content or the new, never a part, even after a crash or a full disk.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `<pid>.<n>`: a suffix no other writer (thread or process) uses at the same time.
pub fn unique_suffix() -> String {
    format!("{}.{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Writes a small file atomically (temp file, fsync, rename, fsync directory). On error the
/// temporary file is removed and `path` keeps its previous content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", unique_suffix()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(parent) = path.parent() {
            fsync_dir(parent)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Fsyncs every file and directory under `dir`, then `dir` itself.
pub fn fsync_tree(dir: &Path) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            fsync_tree(&e.path())?;
        } else {
            File::open(e.path())?.sync_all()?;
        }
    }
    fsync_dir(dir)
}

pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("x");
        assert!(write_atomic(&p, b"x").is_err());
        assert!(!p.exists());
    }
}
