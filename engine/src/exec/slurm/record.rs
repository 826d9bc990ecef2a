//! What the cache remembers about submitted jobs, next to the job file of each key:
//!
//! ```text
//! jobs/<key>.json          the job file (what the worker runs)
//! jobs/<key>.slurm.sh      the batch script submitted for it
//! jobs/<key>.slurm.json    the latest Slurm job for the key: id, name, sbatch arguments, when
//! logs/<key>.log           the job's stdout and stderr (sbatch --output)
//! logs/<key>.events        the worker's progress events, read by `pipeline run` while it polls
//! jobs/bin/<exe>-<hash>    the worker executables jobs run, copied at submission (see snapshot)
//! ```
//!
//! The record is what lets an interrupted `pipeline run` attach to its jobs instead of
//! submitting them twice, and what `pipeline status` shows. It is written after `sbatch`
//! returns; a run killed in between leaves a job without a record, which a rerun submits again
//! (the second job then waits for the key's lock and finds the output published).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::key::StageKey;
use crate::store::Store;

/// Where the Slurm side of one key lives in the cache.
#[derive(Debug, Clone)]
pub struct JobPaths {
    pub script: PathBuf,
    pub record: PathBuf,
    pub events: PathBuf,
    pub log: PathBuf,
    /// The published entry's record: its appearance is the stage's success.
    pub published: PathBuf,
}

impl JobPaths {
    pub fn new(store: &Store, key: &StageKey) -> JobPaths {
        let jobs = store.job_path(key);
        let log = store.log_path(key);
        JobPaths {
            script: jobs.with_extension("slurm.sh"),
            record: jobs.with_extension("slurm.json"),
            events: log.with_extension("events"),
            log,
            published: store.object_dir(key).join("record.json"),
        }
    }
}

/// The latest Slurm job submitted for a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmittedJob {
    pub job_id: String,
    /// `<experiment>:<stage>` (`@<variant>` for sweep variants): `squeue --name` finds it.
    pub name: String,
    /// The batch script: a job whose command is not this script is not ours (ids are reused).
    pub script: PathBuf,
    pub submitted_unix_ms: u64,
    /// How long `sbatch` took.
    pub sbatch_ms: u64,
    /// Jobs it waits for (`--dependency=afterok:…`).
    pub after: Vec<String>,
    pub sbatch_args: Vec<String>,
}

impl SubmittedJob {
    pub fn read(path: &Path) -> Option<SubmittedJob> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::atomic::write_atomic(path, &bytes)
    }
}

pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
