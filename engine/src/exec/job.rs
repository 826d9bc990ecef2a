//! The job file: everything a worker process needs to run one stage for one key, whether it is
//! a local child process or a cluster job on another node. `exec::job_file` writes it from a plan.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::inputs::{Artifact, ExternalFile};
use crate::key::{KeyInputs, StageKey};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobFile {
    pub key: StageKey,
    pub inputs: KeyInputs,
    /// Every resolved param (the key's plus those that only choose how the stage runs).
    pub params: serde_json::Value,
    pub experiment: String,
    pub variant: String,
    pub stage: String,
    /// Where the stage's relative path params resolve.
    pub params_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub upstream: Vec<Artifact>,
    pub ancestors: Vec<Artifact>,
    pub external: Vec<ExternalFile>,
    pub threads: usize,
    pub devices: Vec<usize>,
    /// Recompute even if the key is already published.
    pub force: bool,
    /// The log file the worker's stderr goes to; copied into the published entry.
    pub log: Option<PathBuf>,
    /// Where the stage is written (`file:line:column`), for its messages.
    #[serde(default)]
    pub location: Option<String>,
    /// `file:line:column` of each param set in the experiment files (dotted path in the table).
    #[serde(default)]
    pub param_locations: std::collections::BTreeMap<String, String>,
}

impl JobFile {
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::atomic::write_atomic(path, &bytes)
    }

    pub fn read(path: &Path) -> Result<JobFile, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: not a job file: {e}", path.display()))
    }
}
