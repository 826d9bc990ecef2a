//! The back-ends, in one place: how one is opened for a run, and what each remembers about jobs
//! of earlier runs (for `pipeline status`). Which back-ends exist and which experiment tables
//! they own is in `config.rs`. Adding one (PBS, say) is a sibling module of `local` and `slurm`,
//! a variant of [`ExecutorKind`] and its table, and one arm in each function below; nothing
//! outside `exec/` names a back-end.

use std::collections::HashMap;

use super::backend::{Backend, JobStatus};
use super::config::{ExecutorKind, RunConfig};
use super::scheduler::Schedule;
use super::{local, slurm};
use crate::key::StageKey;
use crate::plan::Plan;
use crate::store::Store;

/// Why a back-end cannot be used from here.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The user asked for something this machine does not have (exit code 2).
    #[error("{0}")]
    Unavailable(String),
    #[error("{context}: {source}")]
    Failed {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Opens the back-end `kind` to run `schedule`'s jobs of `plan`.
pub fn open(
    kind: ExecutorKind,
    config: &RunConfig,
    store: &Store,
    plan: &Plan,
    schedule: &Schedule,
) -> Result<Box<dyn Backend>, OpenError> {
    match kind {
        ExecutorKind::Local => Ok(Box::new(local::LocalBackend::new())),
        ExecutorKind::Slurm => match slurm::SlurmBackend::new(config.slurm.clone(), store, plan, schedule) {
            Ok(b) => Ok(Box::new(b)),
            Err(e @ slurm::command::SlurmError::NotInstalled { .. }) => Err(OpenError::Unavailable(e.to_string())),
            Err(e) => Err(OpenError::Failed {
                context: "cannot use Slurm from this machine (to find jobs of earlier runs and to submit)".into(),
                source: Box::new(e),
            }),
        },
    }
}

/// The latest job any back-end ran or queued for each of `keys`, where it still knows it.
pub fn job_statuses(store: &Store, keys: &[&StageKey]) -> HashMap<StageKey, JobStatus> {
    slurm::job_statuses(store, keys)
}
