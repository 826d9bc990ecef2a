//! Roots: indexes outside the store whose keys `gc` keeps, as Nix keeps what its `result` links
//! point to. The results views (`crate::view`) are the roots a `pipeline run` makes.
//!
//! A root is `roots/<id>.json`, naming an index file: `{"index": "/abs/results/exp/.index.json"}`.
//! The index is a JSON object with at least `store` (the absolute root of the store it points
//! into) and `keys` (every key it points to). A root whose index is gone, or which now belongs
//! to another store (a results directory shared by two caches), is stale: gc ignores it and
//! removes the root file. An index that exists but cannot be read stops gc, which then removes
//! nothing: it cannot know what that view needs.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, io_err};
use crate::atomic::write_atomic;
use crate::key::StageKey;

#[derive(Debug, Serialize, Deserialize)]
struct RootFile {
    index: PathBuf,
}

/// The part of an index file the store reads.
#[derive(Debug, Deserialize)]
struct IndexKeys {
    store: PathBuf,
    keys: Vec<StageKey>,
}

/// A live root: its index file and the keys it points to.
#[derive(Debug, Clone)]
pub struct Root {
    pub index: PathBuf,
    pub keys: Vec<StageKey>,
}

impl Store {
    /// Registers (or re-registers) the index file `index` as root `id`: from now on gc keeps
    /// the keys it lists, for as long as it exists and names this store.
    pub fn register_root(&self, id: &str, index: &Path) -> Result<(), StoreError> {
        let path = self.root.join("roots").join(format!("{id}.json"));
        let bytes = serde_json::to_vec(&RootFile { index: index.to_path_buf() })
            .map_err(|e| StoreError::Corrupt { path: path.clone(), message: e.to_string() })?;
        write_atomic(&path, &bytes).map_err(io_err(&path))
    }

    /// Every live root; stale root files are removed when `clean`. An index that exists but
    /// cannot be read is an error.
    pub fn roots(&self, clean: bool) -> Result<Vec<Root>, StoreError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for e in fs::read_dir(self.root.join("roots")).into_iter().flatten().flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let stale = || {
                if clean {
                    let _ = fs::remove_file(&path);
                }
            };
            let Some(root) = fs::read(&path).ok().and_then(|b| serde_json::from_slice::<RootFile>(&b).ok()) else {
                // Root files are written atomically: an unreadable one was not written by us.
                stale();
                continue;
            };
            let bytes = match fs::read(&root.index) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    stale();
                    continue;
                }
                Err(source) => return Err(StoreError::Io { path: root.index, source }),
            };
            let index: IndexKeys = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: root.index.clone(),
                message: format!("{e}; gc removes nothing while it cannot tell what this index keeps"),
            })?;
            if index.store.canonicalize().ok().as_deref() != Some(self.root.as_path()) {
                stale();
                continue;
            }
            if seen.insert(root.index.clone()) {
                out.push(Root { index: root.index, keys: index.keys });
            }
        }
        out.sort_by(|a, b| a.index.cmp(&b.index));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::test_key as key;

    #[test]
    fn roots_follow_their_index_and_stale_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let other = Store::open(&dir.path().join("other")).unwrap();
        let index = |name: &str, store: &Store, keys: &[StageKey]| {
            let p = dir.path().join(name);
            std::fs::write(&p, serde_json::to_vec(&serde_json::json!({"store": store.root(), "keys": keys})).unwrap())
                .unwrap();
            p
        };
        let live = index("live.json", &store, &[key(1), key(2)]);
        let foreign = index("foreign.json", &other, &[key(3)]);
        store.register_root("live", &live).unwrap();
        store.register_root("foreign", &foreign).unwrap();
        store.register_root("gone", &dir.path().join("gone.json")).unwrap();

        let roots = store.roots(false).unwrap();
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].keys, [key(1), key(2)]);
        assert_eq!(std::fs::read_dir(store.root().join("roots")).unwrap().count(), 3, "no cleaning asked");
        store.roots(true).unwrap();
        let left: Vec<_> =
            std::fs::read_dir(store.root().join("roots")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, ["live.json"]);

        std::fs::write(&live, b"{\"store\": ").unwrap();
        let e = store.roots(true).unwrap_err();
        assert!(e.to_string().contains("live.json"), "{e}");
    }
}
