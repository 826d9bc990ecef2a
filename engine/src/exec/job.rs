//! The job file: everything a worker process needs to run one stage for one key, whether it is
//! a local child process or a Slurm job on another node.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::context::{Artifact, ExternalFile};
use crate::key::{KeyInputs, StageKey};
use crate::plan::{Job, Plan};
use crate::store::Store;

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
}

impl JobFile {
    pub fn new(plan: &Plan, job: &Job, store: &Store, threads: usize, devices: Vec<usize>, force: bool) -> JobFile {
        let s = &job.stage;
        let vp = plan.variant(&s.variant).expect("a job's variant is in its plan");
        let artifact = |name: &String| {
            let u = &vp.stages[name];
            Artifact { name: name.clone(), kind: u.kind.clone(), key: u.key.clone(), dir: store.out_dir(&u.key) }
        };
        JobFile {
            key: job.key.clone(),
            inputs: s.inputs.clone(),
            params: s.params.clone(),
            experiment: plan.experiment.name.clone(),
            variant: s.variant.clone(),
            stage: s.name.clone(),
            params_dir: std::path::absolute(&s.params_dir).unwrap_or_else(|_| s.params_dir.clone()),
            cache_dir: store.root().to_path_buf(),
            upstream: s.needs.iter().map(artifact).collect(),
            ancestors: s.ancestors.iter().map(artifact).collect(),
            external: s.external.clone(),
            threads,
            devices,
            force,
            log: Some(store.log_path(&job.key)),
        }
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::store::write_atomic(path, &bytes)
    }

    pub fn read(path: &Path) -> Result<JobFile, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: not a job file: {e}", path.display()))
    }
}
