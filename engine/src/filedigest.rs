//! Content digests of external input files, memoised by (device, inode, size, mtime) so a
//! no-op rerun costs one `stat` per file. `verify` rehashes everything.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    stamp: Stamp,
    digest: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct DigestError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The memo lives in one JSON file inside the cache; concurrent runs may each rewrite it (it is
/// replaced atomically, and losing an entry only costs a rehash).
pub struct DigestMemo {
    file: Option<PathBuf>,
    entries: HashMap<PathBuf, Entry>,
    dirty: bool,
    verify: bool,
    /// Bytes hashed during this process (for tests and `--verbose`).
    pub hashed_bytes: u64,
}

impl DigestMemo {
    pub fn load(file: &Path, verify: bool) -> DigestMemo {
        let entries = std::fs::read(file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        DigestMemo { file: Some(file.to_path_buf()), entries, dirty: false, verify, hashed_bytes: 0 }
    }

    pub fn in_memory() -> DigestMemo {
        DigestMemo { file: None, entries: HashMap::new(), dirty: false, verify: false, hashed_bytes: 0 }
    }

    /// Digests of `paths`, in order; files whose stamp changed are hashed in parallel.
    pub fn digests(&mut self, paths: &[PathBuf]) -> Result<Vec<String>, DigestError> {
        let mut out = vec![String::new(); paths.len()];
        let mut todo = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            let meta = std::fs::metadata(&abs).map_err(|source| DigestError { path: p.clone(), source })?;
            let stamp = Stamp::of(&meta);
            match self.entries.get(&abs) {
                Some(e) if e.stamp == stamp && !self.verify => out[i] = e.digest.clone(),
                _ => todo.push((i, abs, stamp)),
            }
        }
        let hashed: Vec<Result<(usize, PathBuf, Stamp, String), DigestError>> = todo
            .into_par_iter()
            .map(|(i, abs, stamp)| {
                let digest = hash_file(&abs).map_err(|source| DigestError { path: paths[i].clone(), source })?;
                Ok((i, abs, stamp, digest))
            })
            .collect();
        for r in hashed {
            let (i, abs, stamp, digest) = r?;
            self.hashed_bytes += stamp.size;
            out[i] = digest.clone();
            self.entries.insert(abs, Entry { stamp, digest });
            self.dirty = true;
        }
        Ok(out)
    }

    /// Writes the memo back if anything was hashed.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        if !self.dirty {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&self.entries).map_err(std::io::Error::other)?;
        crate::atomic::write_atomic(file, &bytes)?;
        self.dirty = false;
        Ok(())
    }
}

pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap(path)?;
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_files_are_not_rehashed_and_touch_keeps_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.bin");
        std::fs::write(&f, b"hello").unwrap();
        let memo_file = dir.path().join("memo.json");
        let mut memo = DigestMemo::load(&memo_file, false);
        let d1 = memo.digests(std::slice::from_ref(&f)).unwrap();
        assert_eq!(memo.hashed_bytes, 5);
        memo.save().unwrap();

        let mut memo = DigestMemo::load(&memo_file, false);
        let d2 = memo.digests(std::slice::from_ref(&f)).unwrap();
        assert_eq!(d1, d2);
        assert_eq!(memo.hashed_bytes, 0, "a stat hit must not rehash");

        // Same content, new mtime: rehashed, same digest.
        let t = std::fs::File::options().write(true).open(&f).unwrap();
        t.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).unwrap();
        let d3 = memo.digests(std::slice::from_ref(&f)).unwrap();
        assert_eq!(d1, d3);
        assert_eq!(memo.hashed_bytes, 5);

        std::fs::write(&f, b"world").unwrap();
        let t = std::fs::File::options().write(true).open(&f).unwrap();
        t.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(10)).unwrap();
        assert_ne!(memo.digests(std::slice::from_ref(&f)).unwrap(), d1);
    }

    #[test]
    fn missing_files_name_the_file() {
        let mut memo = DigestMemo::in_memory();
        let err = memo.digests(&[PathBuf::from("/nonexistent/x.tiff")]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.tiff"));
    }
}
