//! The back-end abstraction: something that starts a stage's worker (`<exe> exec-stage --job
//! FILE`) somewhere and reports back through [`ExecEvent`]s. The driver ([`super::execute`])
//! hands a back-end only stages that are not cached and whose slots the [`super::Scheduler`]
//! granted; back-ends never look at the cache themselves.

use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;

use super::events::WorkerEvent;
use super::job::JobFile;
use crate::key::StageKey;
use crate::stage::Resources;

/// What a back-end needs to start one stage.
pub struct Launch<'a> {
    pub idx: usize,
    pub exe: &'a Path,
    pub job_file: &'a Path,
    pub job: &'a JobFile,
    /// Where the stage's log goes (a fresh file for this attempt; the previous attempt's log
    /// was moved aside by the driver, unless the back-end [adopts](Backend::adopts) the key).
    pub log: &'a Path,
    pub threads: usize,
    pub resources: Resources,
    /// Stages this one needs that are launched but not finished yet. Always empty unless the
    /// back-end [`queues_dependants`](Backend::queues_dependants): it then makes the stage wait
    /// for them itself (Slurm: `--dependency=afterok`).
    pub after: &'a [usize],
}

/// What a back-end did with its launched stages on Ctrl-C.
#[derive(Debug, Default)]
pub struct Interruption {
    /// Stages left running on purpose (a Slurm job keeps going; a later run attaches to it),
    /// each with a line saying where. The run stops waiting for them.
    pub left_running: Vec<(usize, String)>,
    /// Printed once after the stages: how to attach again or cancel them.
    pub note: Option<String>,
}

pub enum ExecEvent {
    Worker {
        idx: usize,
        event: WorkerEvent,
    },
    /// The worker ended; `code` is its exit code (128 + signal when killed).
    Exited {
        idx: usize,
        code: Option<i32>,
    },
    /// The back-end knows why the worker failed (e.g. a Slurm job state).
    Failed {
        idx: usize,
        message: String,
    },
    /// Something the back-end tells the user about a stage, printed as one line of the run's
    /// output: `  <verb> <stage> <detail>` (e.g. "submitted", "Slurm job 12").
    Note {
        idx: usize,
        verb: &'static str,
        detail: String,
    },
    Interrupt,
}

pub trait Backend {
    fn name(&self) -> &'static str;
    /// Whether `--jobs` and the machine's GPUs bound what runs at once (a cluster queues instead).
    fn limits_slots(&self) -> bool;
    /// Called once before anything launches, with the jobs to run (indices into the plan) and
    /// every executable they need.
    fn prepare(&mut self, _to_run: &[usize], _executables: &[PathBuf]) {}
    /// Whether launching `key` attaches to work already under way (a cluster job of an earlier
    /// run) instead of starting a new attempt; its log is then left as it is.
    fn adopts(&self, _key: &StageKey) -> bool {
        false
    }
    fn launch(&mut self, launch: Launch<'_>, events: &Sender<ExecEvent>) -> Result<(), String>;
    /// Asks running workers to stop (`force`: kill them now). Used by `--fail-fast`, and by
    /// Ctrl-C through the default [`interrupt`](Backend::interrupt).
    fn cancel(&mut self, force: bool);
    fn finished(&mut self, idx: usize);
    /// Whether a stage may be launched while stages it needs are still running, because the
    /// back-end orders them itself ([`Launch::after`]). A cluster then holds the whole DAG and
    /// finishes it even if `pipeline run` goes away.
    fn queues_dependants(&self) -> bool {
        false
    }
    /// The first Ctrl-C (or SIGTERM/SIGHUP). By default running stages are asked to stop and the
    /// run waits for them; a back-end whose stages outlive the run may leave them running instead.
    fn interrupt(&mut self) -> Interruption {
        self.cancel(false);
        Interruption::default()
    }
    /// Lines to show before the run starts (e.g. that the cache is not on a shared file system).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What `pipeline status` says about the latest job a back-end ran or queued for a key.
#[derive(Debug, Clone)]
pub struct JobStatus {
    /// The back-end's name (`slurm`).
    pub backend: &'static str,
    pub job_id: String,
    /// The back-end's state of the job, or `None` where it could not be asked (see `note`).
    pub state: Option<String>,
    /// Whether the job is still queued or running.
    pub live: bool,
    /// Whether it is waiting in a queue (as opposed to running).
    pub queued: bool,
    /// One phrase: "Slurm job 12 RUNNING on n1 for 1:02".
    pub description: String,
}
