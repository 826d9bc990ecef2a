//! Running a plan.
//!
//! ```text
//! Schedule   (scheduler.rs)  the to-run set: cache lookup and --force, once, in front of every back-end
//! Scheduler  (scheduler.rs)  CPU/GPU slots, readiness, skips, what a job's end means; no I/O
//! execute    (driver.rs)     the loop: scheduler → job file → back-end → events → scheduler
//! Backend    (backend.rs)    starts workers somewhere: local.rs (child processes), slurm/ (batch jobs)
//! factory.rs                 which back-ends exist and how one is opened; config.rs types [run]
//! worker.rs                  `exec-stage --job FILE`: runs one stage and publishes it atomically
//! ```

pub mod backend;
pub mod config;
mod driver;
pub mod events;
pub mod factory;
pub mod job;
pub mod local;
pub mod scheduler;
pub mod slurm;
pub mod worker;

pub use backend::{Backend, ExecEvent, Interruption, JobStatus, Launch};
pub use config::ExecutorKind;
pub use config::RunConfig;
pub use driver::{JobOutcome, RunOptions, RunReport, detect_gpus, execute, job_file, log_tail};
pub use scheduler::{Schedule, Scheduler, Status};

use crate::plan::Plan;

/// How a stage is named in a run's output: `stage`, or `stage [variant]` in a sweep.
pub fn label(plan: &Plan, variant: &str, stage: &str) -> String {
    if plan.variants.len() > 1 { format!("{stage} [{variant}]") } else { stage.to_string() }
}
