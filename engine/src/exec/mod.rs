//! Running a plan. The cache lookup sits in front of every back-end (local processes, Slurm):
//! cached stages are never launched. The loop launches ready stages within CPU and GPU slots,
//! shows their progress, skips the dependants of failures, and stops cleanly on Ctrl-C.

pub mod job;
pub mod local;
pub mod slurm;
pub mod worker;

use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;

use crate::context::WorkerEvent;
use crate::key::StageKey;
use crate::plan::Plan;
use crate::progress::{RunDisplay, StageBar, seconds};
use crate::record::{LastRun, now_unix};
use crate::stage::Resources;
use crate::store::Store;
use job::JobFile;

/// What a back-end needs to start one stage.
pub struct Launch<'a> {
    pub idx: usize,
    pub exe: &'a Path,
    pub job_file: &'a Path,
    pub job: &'a JobFile,
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
    fn launch(&mut self, launch: Launch<'_>, events: &Sender<ExecEvent>) -> Result<(), String>;
    /// Asks running workers to stop (`force`: kill them now). Used by `--fail-fast`, and by
    /// Ctrl-C through the default [`interrupt`](Backend::interrupt).
    fn cancel(&mut self, force: bool);
    fn finished(&mut self, idx: usize);
    /// Called once before anything launches, with every executable the pending stages need.
    fn prepare(&mut self, _executables: &[std::path::PathBuf]) {}
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Cached,
    Ran,
    Failed,
    Skipped,
    Cancelled,
    /// Still running when the run ended (a Slurm job left running on Ctrl-C).
    Running,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Cached => "cached",
            Status::Ran => "ran",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Cancelled => "cancelled",
            Status::Running => "running",
        }
    }
}

#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub status: Status,
    pub seconds: f64,
    pub message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// CPU slots.
    pub jobs: usize,
    /// GPUs to use; `None` detects them when a stage wants one.
    pub gpus: Option<usize>,
    /// Stage names to recompute even when cached.
    pub force: Vec<String>,
    pub fail_fast: bool,
}

#[derive(Debug)]
pub struct RunReport {
    pub outcomes: Vec<JobOutcome>,
    pub interrupted: bool,
}

impl RunReport {
    pub fn failed(&self) -> bool {
        self.outcomes.iter().any(|o| matches!(o.status, Status::Failed | Status::Skipped | Status::Cancelled))
    }
}

enum State {
    Pending,
    Running { bar: StageBar, start: Instant, cpus: usize, gpus: Vec<usize>, cached_by_other: bool },
    Done(JobOutcome),
}

fn interrupts() -> &'static (Sender<ExecEvent>, Receiver<ExecEvent>) {
    static CHANNEL: OnceLock<(Sender<ExecEvent>, Receiver<ExecEvent>)> = OnceLock::new();
    CHANNEL.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded();
        let handler_tx = tx.clone();
        let _ = ctrlc::set_handler(move || {
            let _ = handler_tx.send(ExecEvent::Interrupt);
        });
        (tx, rx)
    })
}

pub fn label(plan: &Plan, variant: &str, stage: &str) -> String {
    if plan.variants.len() > 1 { format!("{stage} [{variant}]") } else { stage.to_string() }
}

/// Runs every job of `plan` that is not cached.
pub fn execute(
    plan: &Plan,
    store: &Store,
    backend: &mut dyn Backend,
    opts: &RunOptions,
    display: &RunDisplay,
) -> RunReport {
    let n = plan.jobs.len();
    let forced: HashSet<usize> =
        (0..n).filter(|&i| plan.jobs[i].users.iter().any(|(_, name)| opts.force.contains(name))).collect();
    let (tx, rx) = interrupts().clone();
    let mut states: Vec<State> = Vec::with_capacity(n);
    for (i, job) in plan.jobs.iter().enumerate() {
        if !forced.contains(&i) && store.has(&job.key) {
            states.push(State::Done(JobOutcome { status: Status::Cached, seconds: 0.0, message: None }));
        } else {
            states.push(State::Pending);
        }
    }
    let wants_gpu =
        plan.jobs.iter().enumerate().any(|(i, j)| matches!(states[i], State::Pending) && j.stage.resources.gpus > 0);
    let gpu_total = if wants_gpu { opts.gpus.unwrap_or_else(detect_gpus) } else { 0 };
    let mut free_gpus: Vec<usize> = (0..gpu_total).collect();
    let mut executables: Vec<std::path::PathBuf> = plan
        .jobs
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(states[*i], State::Pending))
        .filter_map(|(_, j)| local::worker_exe(j.stage.worker).ok())
        .collect();
    executables.sort();
    executables.dedup();
    backend.prepare(&executables);
    let jobs = opts.jobs.max(1);
    let mut free_cpus = jobs;
    let mut stopping = false;
    let mut interrupted = false;

    loop {
        // Launch (or skip) whatever is ready, in plan order.
        let mut progressed = true;
        while progressed && !stopping {
            progressed = false;
            for i in 0..n {
                if !matches!(states[i], State::Pending) {
                    continue;
                }
                let deps = &plan.jobs[i].deps;
                if deps.iter().any(
                    |&d| matches!(&states[d], State::Done(o) if o.status != Status::Cached && o.status != Status::Ran),
                ) {
                    states[i] = State::Done(JobOutcome {
                        status: Status::Skipped,
                        seconds: 0.0,
                        message: Some("an upstream stage failed".into()),
                    });
                    progressed = true;
                    continue;
                }
                let ready = |d: &usize| match &states[*d] {
                    State::Done(_) => true,
                    State::Running { .. } => backend.queues_dependants(),
                    State::Pending => false,
                };
                if !deps.iter().all(ready) {
                    continue;
                }
                let after: Vec<usize> =
                    deps.iter().copied().filter(|&d| matches!(states[d], State::Running { .. })).collect();
                let job = &plan.jobs[i];
                let res = job.stage.resources;
                // A cluster gives a stage the CPUs it declares; only a shared machine caps them.
                let cpus = match res.cpus {
                    0 => jobs,
                    n if backend.limits_slots() => n.min(jobs),
                    n => n,
                };
                if backend.limits_slots() && cpus > free_cpus {
                    continue;
                }
                let want_gpus = if gpu_total > 0 { res.gpus.min(gpu_total) } else { 0 };
                if backend.limits_slots() && want_gpus > free_gpus.len() {
                    continue;
                }
                let devices: Vec<usize> = if backend.limits_slots() {
                    free_gpus.drain(..want_gpus).collect()
                } else {
                    (0..res.gpus).collect()
                };
                let s = &job.stage;
                let lbl = label(plan, &s.variant, &s.name);
                let outcome = (|| -> Result<State, String> {
                    let exe = local::worker_exe(s.worker)?;
                    let file = JobFile::new(plan, job, store, cpus, devices.clone(), forced.contains(&i));
                    let job_path = store.job_path(&job.key);
                    file.write(&job_path).map_err(|e| format!("{}: {e}", job_path.display()))?;
                    let log = store.log_path(&job.key);
                    let bar = display.stage_bar(&lbl);
                    bar.message("starting");
                    backend.launch(
                        Launch {
                            idx: i,
                            exe: &exe,
                            job_file: &job_path,
                            job: &file,
                            log: &log,
                            threads: cpus,
                            resources: res,
                            after: &after,
                        },
                        &tx,
                    )?;
                    Ok(State::Running {
                        bar,
                        start: Instant::now(),
                        cpus,
                        gpus: devices.clone(),
                        cached_by_other: false,
                    })
                })();
                match outcome {
                    Ok(state) => {
                        if backend.limits_slots() {
                            free_cpus -= cpus;
                        }
                        states[i] = state;
                    }
                    Err(message) => {
                        free_gpus.extend(devices);
                        display.error(&format!("  failed    {lbl}: {message}"));
                        states[i] =
                            State::Done(JobOutcome { status: Status::Failed, seconds: 0.0, message: Some(message) });
                        if opts.fail_fast {
                            stopping = true;
                        }
                    }
                }
                progressed = true;
            }
        }
        if !states.iter().any(|s| matches!(s, State::Running { .. })) {
            break;
        }
        let Ok(event) = rx.recv() else { break };
        match event {
            ExecEvent::Interrupt => {
                if interrupted {
                    display.line("interrupted again: killing running stages");
                    backend.cancel(true);
                } else {
                    interrupted = true;
                    stopping = true;
                    let left = backend.interrupt();
                    if left.left_running.is_empty() {
                        display.line("interrupted: stopping running stages (nothing half-done is published)…");
                    } else {
                        display.line("interrupted: leaving the launched stages running");
                    }
                    for (idx, message) in left.left_running {
                        let State::Running { bar, start, .. } = std::mem::replace(&mut states[idx], State::Pending)
                        else {
                            continue;
                        };
                        bar.finish();
                        backend.finished(idx);
                        let s = &plan.jobs[idx].stage;
                        display.line(&format!("  running   {:<30} {message}", label(plan, &s.variant, &s.name)));
                        states[idx] = State::Done(JobOutcome {
                            status: Status::Running,
                            seconds: start.elapsed().as_secs_f64(),
                            message: Some(message),
                        });
                    }
                    if let Some(note) = left.note {
                        display.line(&note);
                    }
                }
            }
            ExecEvent::Worker { idx, event } => {
                if let State::Running { bar, cached_by_other, .. } = &mut states[idx] {
                    match event {
                        WorkerEvent::Progress { pos, len, message } => bar.update(pos, len, &message),
                        WorkerEvent::Waiting { message } => bar.message(&message),
                        WorkerEvent::Cached => *cached_by_other = true,
                        WorkerEvent::Done { .. } => bar.message("publishing"),
                    }
                }
            }
            ExecEvent::Note { idx, verb, detail } => {
                let s = &plan.jobs[idx].stage;
                display.line(&format!("  {verb:<9} {:<30} {detail}", label(plan, &s.variant, &s.name)));
            }
            ExecEvent::Failed { idx, message } => {
                finish(
                    idx,
                    Some(message),
                    None,
                    plan,
                    store,
                    &mut states,
                    &mut free_cpus,
                    &mut free_gpus,
                    backend,
                    display,
                    interrupted,
                );
                if opts.fail_fast && !stopping {
                    stopping = true;
                    backend.cancel(false);
                }
            }
            ExecEvent::Exited { idx, code } => {
                if !matches!(states[idx], State::Running { .. }) {
                    continue;
                }
                let failed = finish(
                    idx,
                    None,
                    code,
                    plan,
                    store,
                    &mut states,
                    &mut free_cpus,
                    &mut free_gpus,
                    backend,
                    display,
                    interrupted,
                );
                if failed && opts.fail_fast && !stopping {
                    stopping = true;
                    display.line("--fail-fast: stopping the other running stages");
                    backend.cancel(false);
                }
            }
        }
    }

    let outcomes: Vec<JobOutcome> = states
        .into_iter()
        .map(|s| match s {
            State::Done(o) => o,
            _ => JobOutcome {
                status: if interrupted { Status::Cancelled } else { Status::Skipped },
                seconds: 0.0,
                message: Some(if interrupted { "interrupted".into() } else { "not started (--fail-fast)".into() }),
            },
        })
        .collect();
    // Remember what each named stage resolved to, for `status` and `explain`.
    for (job, o) in plan.jobs.iter().zip(&outcomes) {
        if matches!(o.status, Status::Cached | Status::Ran) {
            for (variant, name) in &job.users {
                let s = &plan.variant(variant).expect("user variant").stages[name];
                let last = LastRun {
                    key: s.key.clone(),
                    inputs: s.inputs.clone(),
                    external_paths: s.external.iter().map(|e| (e.name.clone(), e.path.clone())).collect(),
                    recorded_unix: now_unix(),
                };
                if let Err(e) = store.save_last_run(&plan.experiment.name, variant, name, &last) {
                    display.line(&format!("warning: could not record the run of `{name}`: {e}"));
                }
            }
        }
    }
    RunReport { outcomes, interrupted }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    idx: usize,
    message: Option<String>,
    code: Option<i32>,
    plan: &Plan,
    store: &Store,
    states: &mut [State],
    free_cpus: &mut usize,
    free_gpus: &mut Vec<usize>,
    backend: &mut dyn Backend,
    display: &RunDisplay,
    interrupted: bool,
) -> bool {
    let State::Running { start, cpus, gpus, cached_by_other, .. } = &states[idx] else { return false };
    let secs = start.elapsed().as_secs_f64();
    let (cpus, gpus, cached_by_other) = (*cpus, gpus.clone(), *cached_by_other);
    if backend.limits_slots() {
        *free_cpus += cpus;
    }
    free_gpus.extend(gpus);
    free_gpus.sort();
    backend.finished(idx);
    let job = &plan.jobs[idx];
    let lbl = label(plan, &job.stage.variant, &job.stage.name);
    let published = store.has(&job.key);
    // A stage queued behind one that failed ends too (Slurm cancels it): that is a skip.
    let upstream_failed = job
        .deps
        .iter()
        .any(|&d| matches!(&states[d], State::Done(o) if !matches!(o.status, Status::Cached | Status::Ran)));
    let outcome = if message.is_none() && code == Some(0) && published {
        let status = if cached_by_other { Status::Cached } else { Status::Ran };
        // On a cluster the time since launch includes the queue: show the stage's own time.
        let secs = if backend.limits_slots() {
            secs
        } else {
            store.record(&job.key).ok().flatten().map(|r| r.seconds).unwrap_or(secs)
        };
        JobOutcome { status, seconds: secs, message: None }
    } else if upstream_failed && !published {
        JobOutcome { status: Status::Skipped, seconds: secs, message: Some("an upstream stage failed".into()) }
    } else if code == Some(worker::EXIT_CANCELLED as i32) || (interrupted && message.is_none()) {
        JobOutcome { status: Status::Cancelled, seconds: secs, message: Some("interrupted".into()) }
    } else {
        let log = store.log_path(&job.key);
        let why = message.unwrap_or_else(|| match code {
            Some(0) => "the worker exited without publishing its output".into(),
            Some(c) if c > 128 => format!("the worker was killed by signal {}", c - 128),
            Some(c) => format!("exit code {c}"),
            None => "the worker ended abnormally".into(),
        });
        JobOutcome { status: Status::Failed, seconds: secs, message: Some(format!("{why}\n{}", log_tail(&log, 12))) }
    };
    let State::Running { bar, .. } = std::mem::replace(&mut states[idx], State::Pending) else { unreachable!() };
    bar.finish();
    let key = short(&job.key);
    match outcome.status {
        Status::Ran => display.line(&format!("  ran       {lbl:<30} {:>9}  {key}", seconds(outcome.seconds))),
        Status::Cached => display.line(&format!("  cached    {lbl:<30} {:>9}  {key} (computed by another run)", "")),
        Status::Cancelled => display.line(&format!("  cancelled {lbl}")),
        Status::Skipped => display.line(&format!("  skipped   {lbl:<30} {:>9}  {key} (an upstream stage failed)", "")),
        _ => {
            display.error(&format!("  failed    {lbl:<30} {:>9}  {key}", seconds(secs)));
            if let Some(m) = &outcome.message {
                for l in m.lines() {
                    display.error(&format!("      │ {l}"));
                }
            }
        }
    }
    let failed = outcome.status == Status::Failed;
    states[idx] = State::Done(outcome);
    failed
}

fn short(key: &StageKey) -> String {
    key.short().to_string()
}

/// The last `n` lines of a log, for failure messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    let mut out = tail.join("\n");
    out.push_str(&format!("\n(full log: {})", path.display()));
    out
}

/// GPUs on this machine: `CUDA_VISIBLE_DEVICES` if set, else `nvidia-smi -L`.
pub fn detect_gpus() -> usize {
    if let Ok(v) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return v.split(',').filter(|s| !s.trim().is_empty() && s.trim() != "-1").count();
    }
    std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("GPU ")).count())
        .unwrap_or(0)
}
