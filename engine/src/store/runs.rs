//! What each named stage of each experiment variant last resolved to: `runs/<exp>/<variant>/
//! <stage>.json` (its last published key with the key's inputs, for `status` and `explain`) and
//! `<stage>.attempt` (its latest key that did not publish: a failed, killed or interrupted
//! attempt whose resume state `gc` keeps).

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, io_err, slug};
use crate::atomic::write_atomic;
use crate::key::StageKey;
use crate::record::{LastRun, now_unix};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Attempt {
    key: StageKey,
    recorded_unix: u64,
}

impl Store {
    pub fn save_last_run(
        &self,
        experiment: &str,
        variant: &str,
        stage: &str,
        last: &LastRun,
    ) -> Result<(), StoreError> {
        let path = self.run_path(experiment, variant, stage, "json");
        let bytes = serde_json::to_vec_pretty(last)
            .map_err(|e| StoreError::Corrupt { path: path.clone(), message: e.to_string() })?;
        self.write_run_file(&path, &bytes)?;
        // The attempt published: there is no unfinished one any more.
        let _ = fs::remove_file(self.run_path(experiment, variant, stage, "attempt"));
        Ok(())
    }

    /// The last recorded run of a named stage: `Ok(None)` when there is none, an error when
    /// the record exists but cannot be read (truncated, edited, from another version).
    pub fn last_run(&self, experiment: &str, variant: &str, stage: &str) -> Result<Option<LastRun>, StoreError> {
        let path = self.run_path(experiment, variant, stage, "json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt { path, message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Remembers that `key` is the latest attempt of a named stage and did not publish.
    pub fn save_attempt(&self, experiment: &str, variant: &str, stage: &str, key: &StageKey) -> Result<(), StoreError> {
        let path = self.run_path(experiment, variant, stage, "attempt");
        let attempt = Attempt { key: key.clone(), recorded_unix: now_unix() };
        let bytes = serde_json::to_vec(&attempt)
            .map_err(|e| StoreError::Corrupt { path: path.clone(), message: e.to_string() })?;
        self.write_run_file(&path, &bytes)
    }

    fn write_run_file(&self, path: &std::path::Path, bytes: &[u8]) -> Result<(), StoreError> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        write_atomic(path, bytes).map_err(io_err(path))
    }

    fn run_path(&self, experiment: &str, variant: &str, stage: &str, ext: &str) -> PathBuf {
        self.root.join("runs").join(slug(experiment)).join(slug(variant)).join(format!("{}.{ext}", slug(stage)))
    }

    /// Every readable last-run record in the store.
    pub fn all_last_runs(&self) -> Vec<LastRun> {
        self.run_files("json").filter_map(|b| serde_json::from_slice::<LastRun>(&b).ok()).collect()
    }

    /// The keys `gc` keeps without `--keep`: the last published key and the latest unfinished
    /// attempt of every named stage of every experiment ever run here.
    pub fn latest_keys(&self) -> HashSet<StageKey> {
        let mut keys: HashSet<StageKey> = self.all_last_runs().into_iter().map(|l| l.key).collect();
        keys.extend(
            self.run_files("attempt").filter_map(|b| serde_json::from_slice::<Attempt>(&b).ok()).map(|a| a.key),
        );
        keys
    }

    fn run_files(&self, ext: &'static str) -> impl Iterator<Item = Vec<u8>> {
        let mut files = Vec::new();
        let mut stack = vec![self.root.join("runs")];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == ext) {
                    files.push(p);
                }
            }
        }
        files.into_iter().filter_map(|p| fs::read(p).ok())
    }
}
