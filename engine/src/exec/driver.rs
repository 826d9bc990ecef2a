//! Running a plan: the loop that asks the [`Scheduler`] what to start, writes each stage's job
//! file, hands it to the back-end, shows progress, and feeds the back-end's events back to the
//! scheduler, until nothing runs. Ctrl-C stops it cleanly; `--fail-fast` at the first failure.
//! At the end it records what each named stage resolved to (for `status`, `explain` and `gc`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crossbeam_channel::Sender;

use super::backend::{Backend, ExecEvent, Launch};
use super::events::WorkerEvent;
use super::job::JobFile;
use super::scheduler::{Capabilities, Ending, Next, Schedule, Scheduler, Start, Status};
use super::{label, local};
use crate::inputs::Artifact;
use crate::plan::{Job, Plan};
use crate::progress::{RunDisplay, StageBar, seconds};
use crate::record::{LastRun, now_unix};
use crate::store::Store;

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
    /// GPUs to use; `None` detects them when a stage to run wants one.
    pub gpus: Option<usize>,
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

/// A launched job as the display sees it.
struct Running {
    bar: StageBar,
    start: Instant,
    cached_by_other: bool,
}

/// Runs `schedule`'s jobs of `plan` on `backend`. Cached jobs are never handed to it.
pub fn execute(
    plan: &Plan,
    store: &Store,
    schedule: &Schedule,
    backend: &mut dyn Backend,
    opts: &RunOptions,
    display: &RunDisplay,
) -> RunReport {
    let n = plan.jobs.len();
    let (tx, rx) = crossbeam_channel::unbounded();
    subscribe_interrupts(tx.clone());
    let wants_gpu = schedule.to_run().any(|i| plan.jobs[i].stage.resources.gpus > 0);
    let gpus = if wants_gpu { opts.gpus.unwrap_or_else(detect_gpus) } else { 0 };
    let caps = Capabilities { limits_slots: backend.limits_slots(), queues_dependants: backend.queues_dependants() };
    let to_run: Vec<usize> = schedule.to_run().collect();
    let mut executables: Vec<PathBuf> =
        to_run.iter().filter_map(|&i| local::worker_exe(plan.jobs[i].stage.worker).ok()).collect();
    executables.sort();
    executables.dedup();
    backend.prepare(&to_run, &executables);

    let mut d = Driver {
        plan,
        store,
        schedule,
        backend,
        display,
        fail_fast: opts.fail_fast,
        scheduler: Scheduler::new(plan, schedule, opts.jobs, gpus, caps),
        outcomes: (0..n)
            .map(|i| (!schedule.runs(i)).then_some(JobOutcome { status: Status::Cached, seconds: 0.0, message: None }))
            .collect(),
        running: (0..n).map(|_| None).collect(),
        interrupted: false,
        tx,
    };
    loop {
        d.start_ready();
        if !d.scheduler.any_running() {
            break;
        }
        let Ok(event) = rx.recv() else { break };
        match event {
            ExecEvent::Interrupt => d.interrupt(),
            ExecEvent::Worker { idx, event } => {
                if let Some(r) = d.running[idx].as_mut() {
                    match event {
                        WorkerEvent::Progress { pos, len, message } => r.bar.update(pos, len, &message),
                        WorkerEvent::Waiting { message } => r.bar.message(&message),
                        WorkerEvent::Cached => r.cached_by_other = true,
                        WorkerEvent::Done { .. } => r.bar.message("publishing"),
                    }
                }
            }
            ExecEvent::Note { idx, verb, detail } => {
                display.line(&format!("  {verb:<9} {:<30} {detail}", d.label(idx)));
            }
            ExecEvent::Failed { idx, message } => d.ended(idx, Some(message), None),
            ExecEvent::Exited { idx, code } => d.ended(idx, None, code),
        }
    }

    let interrupted = d.interrupted;
    let outcomes: Vec<JobOutcome> = d
        .outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| JobOutcome {
                status: if interrupted { Status::Cancelled } else { Status::Skipped },
                seconds: 0.0,
                message: Some(if interrupted { "interrupted".into() } else { "not started (--fail-fast)".into() }),
            })
        })
        .collect();
    record_runs(plan, store, &outcomes, display);
    RunReport { outcomes, interrupted }
}

/// The state of one [`execute`].
struct Driver<'a> {
    plan: &'a Plan,
    store: &'a Store,
    schedule: &'a Schedule,
    backend: &'a mut dyn Backend,
    display: &'a RunDisplay,
    fail_fast: bool,
    scheduler: Scheduler<'a>,
    outcomes: Vec<Option<JobOutcome>>,
    running: Vec<Option<Running>>,
    interrupted: bool,
    tx: Sender<ExecEvent>,
}

impl Driver<'_> {
    fn label(&self, idx: usize) -> String {
        let s = &self.plan.jobs[idx].stage;
        label(self.plan, &s.variant, &s.name)
    }

    /// Starts (or skips) everything the scheduler lets start now.
    fn start_ready(&mut self) {
        while let Some(next) = self.scheduler.next_step() {
            match next {
                Next::Skip(i) => {
                    self.outcomes[i] = Some(JobOutcome {
                        status: Status::Skipped,
                        seconds: 0.0,
                        message: Some("an upstream stage failed".into()),
                    });
                }
                Next::Start(start) => {
                    let i = start.job;
                    let lbl = self.label(i);
                    match launch(self.plan, self.store, self.schedule, self.backend, &start, &self.tx) {
                        Ok(()) => {
                            let bar = self.display.stage_bar(&lbl);
                            bar.message("starting");
                            self.running[i] = Some(Running { bar, start: Instant::now(), cached_by_other: false });
                        }
                        Err(message) => {
                            self.display.error(&format!("  failed    {lbl}: {message}"));
                            self.scheduler.finish(i, Status::Failed);
                            self.outcomes[i] =
                                Some(JobOutcome { status: Status::Failed, seconds: 0.0, message: Some(message) });
                            if self.fail_fast {
                                self.scheduler.stop();
                            }
                        }
                    }
                }
            }
        }
    }

    /// Ctrl-C (or SIGTERM/SIGHUP): the first stops the run cleanly, the second kills.
    fn interrupt(&mut self) {
        if self.interrupted {
            self.display.line("interrupted again: killing running stages");
            self.backend.cancel(true);
            return;
        }
        self.interrupted = true;
        self.scheduler.stop();
        let left = self.backend.interrupt();
        if left.left_running.is_empty() {
            self.display.line("interrupted: stopping running stages (nothing half-done is published)…");
        } else {
            self.display.line("interrupted: leaving the launched stages running");
        }
        for (idx, message) in left.left_running {
            let Some(r) = self.running[idx].take() else { continue };
            r.bar.finish();
            self.backend.finished(idx);
            self.scheduler.finish(idx, Status::Running);
            self.display.line(&format!("  running   {:<30} {message}", self.label(idx)));
            self.outcomes[idx] = Some(JobOutcome {
                status: Status::Running,
                seconds: r.start.elapsed().as_secs_f64(),
                message: Some(message),
            });
        }
        if let Some(note) = left.note {
            self.display.line(&note);
        }
    }

    /// A launched job ended (`message`: the back-end's reason when it knows one); with
    /// `--fail-fast`, a failure stops everything else.
    fn ended(&mut self, idx: usize, message: Option<String>, code: Option<i32>) {
        let Some(r) = self.running[idx].take() else { return };
        let backend_failed = message.is_some();
        let o = self.end(idx, r, message, code);
        let failed = o.status == Status::Failed || (backend_failed && o.status != Status::Skipped);
        self.outcomes[idx] = Some(o);
        if failed && self.fail_fast && !self.scheduler.stopped() {
            self.scheduler.stop();
            self.display.line("--fail-fast: stopping the other running stages");
            self.backend.cancel(false);
        }
    }

    /// Frees a job's slots, decides its status, and says so.
    fn end(&mut self, idx: usize, r: Running, message: Option<String>, code: Option<i32>) -> JobOutcome {
        let (plan, store, display) = (self.plan, self.store, self.display);
        let secs = r.start.elapsed().as_secs_f64();
        self.backend.finished(idx);
        let job = &plan.jobs[idx];
        let lbl = self.label(idx);
        let ending = Ending {
            code,
            backend_failed: message.is_some(),
            published: store.has(&job.key),
            cached_by_other: r.cached_by_other,
            interrupted: self.interrupted,
        };
        let status = self.scheduler.status_of_ending(idx, ending);
        self.scheduler.finish(idx, status);
        r.bar.finish();
        let key = job.key.short();
        let outcome = match status {
            Status::Ran | Status::Cached => {
                // On a cluster the time since launch includes the queue: show the stage's own time.
                let secs = if self.backend.limits_slots() {
                    secs
                } else {
                    store.record(&job.key).ok().flatten().map(|r| r.seconds).unwrap_or(secs)
                };
                JobOutcome { status, seconds: secs, message: None }
            }
            Status::Skipped => JobOutcome { status, seconds: secs, message: Some("an upstream stage failed".into()) },
            Status::Cancelled => JobOutcome { status, seconds: secs, message: Some("interrupted".into()) },
            _ => {
                let why = message.unwrap_or_else(|| match code {
                    Some(0) => "the worker exited without publishing its output".into(),
                    Some(c) if c > 128 => format!("the worker was killed by signal {}", c - 128),
                    Some(c) => format!("exit code {c}"),
                    None => "the worker ended abnormally".into(),
                });
                let log = store.log_path(&job.key);
                JobOutcome { status, seconds: secs, message: Some(format!("{why}\n{}", log_tail(&log, 12))) }
            }
        };
        match outcome.status {
            Status::Ran => display.line(&format!("  ran       {lbl:<30} {:>9}  {key}", seconds(outcome.seconds))),
            Status::Cached => {
                display.line(&format!("  cached    {lbl:<30} {:>9}  {key} (computed by another run)", ""))
            }
            Status::Cancelled => display.line(&format!("  cancelled {lbl}")),
            Status::Skipped => {
                display.line(&format!("  skipped   {lbl:<30} {:>9}  {key} (an upstream stage failed)", ""))
            }
            _ => {
                display.error(&format!("  failed    {lbl:<30} {:>9}  {key}", seconds(secs)));
                if let Some(m) = &outcome.message {
                    for l in m.lines() {
                        display.error(&format!("      │ {l}"));
                    }
                }
            }
        }
        outcome
    }
}

/// Writes the job file of a job to start and hands it to the back-end.
fn launch(
    plan: &Plan,
    store: &Store,
    schedule: &Schedule,
    backend: &mut dyn Backend,
    start: &Start,
    tx: &Sender<ExecEvent>,
) -> Result<(), String> {
    let job = &plan.jobs[start.job];
    let exe = local::worker_exe(job.stage.worker)?;
    let file = job_file(plan, job, store, start.cpus, start.devices.clone(), schedule.is_forced(start.job));
    let job_path = store.job_path(&job.key);
    file.write(&job_path).map_err(|e| format!("{}: {e}", job_path.display()))?;
    // A new attempt keeps the previous attempt's log beside its own.
    let log = if backend.adopts(&job.key) { store.log_path(&job.key) } else { store.start_log(&job.key) };
    backend.launch(
        Launch {
            idx: start.job,
            exe: &exe,
            job_file: &job_path,
            job: &file,
            log: &log,
            threads: start.cpus,
            resources: job.stage.resources,
            after: &start.after,
        },
        tx,
    )?;
    // Recorded now, not when the run ends: a killed run's attempt (and its resume state) is
    // still the latest of its stage, which `gc` keeps.
    for (variant, name) in &job.users {
        if let Err(e) = store.save_attempt(&plan.experiment.name, variant, name, &job.key) {
            tracing::warn!("could not record the attempt of `{name}`: {e}");
        }
    }
    Ok(())
}

/// The job file of `job`: what its worker needs, wherever it runs.
pub fn job_file(plan: &Plan, job: &Job, store: &Store, threads: usize, devices: Vec<usize>, force: bool) -> JobFile {
    let s = &job.stage;
    let artifact = |variant: &String, name: &String| {
        let vp = plan.variant(variant).expect("a job reads stages of its plan's variants");
        let u = &vp.stages[name];
        Artifact {
            name: name.clone(),
            variant: variant.clone(),
            kind: u.kind.clone(),
            key: u.key.clone(),
            dir: store.out_dir(&u.key),
        }
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
        upstream: s.upstream.iter().map(|(v, n)| artifact(v, n)).collect(),
        ancestors: s.ancestors.iter().map(|n| artifact(&s.variant, n)).collect(),
        location: s.location.as_ref().map(ToString::to_string),
        external: s.external.clone(),
        threads,
        devices,
        force,
        log: Some(store.log_path(&job.key)),
        param_locations: s.param_locations.clone(),
    }
}

/// Remembers what each named stage resolved to, for `status`, `explain` and `gc` (attempts
/// that did not publish were recorded at their launch).
fn record_runs(plan: &Plan, store: &Store, outcomes: &[JobOutcome], display: &RunDisplay) {
    for (job, o) in plan.jobs.iter().zip(outcomes) {
        if !o.status.succeeded() {
            continue;
        }
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

/// Every running [`execute`] hears Ctrl-C (and SIGTERM, SIGHUP) as an [`ExecEvent::Interrupt`].
fn subscribe_interrupts(tx: Sender<ExecEvent>) {
    static SUBSCRIBERS: OnceLock<Mutex<Vec<Sender<ExecEvent>>>> = OnceLock::new();
    let subscribers = SUBSCRIBERS.get_or_init(|| {
        let _ = ctrlc::set_handler(|| {
            if let Some(subs) = SUBSCRIBERS.get()
                && let Ok(mut subs) = subs.lock()
            {
                subs.retain(|tx| tx.send(ExecEvent::Interrupt).is_ok());
            }
        });
        Mutex::new(Vec::new())
    });
    if let Ok(mut subs) = subscribers.lock() {
        subs.push(tx);
    }
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;
    use crate::exec::scheduler::tests::plan;
    use crate::record::Record;

    /// A back-end that runs nothing: it publishes a launched stage's key at once (or fails it,
    /// for the names in `fail`) and remembers what it was given.
    struct Fake {
        store: Store,
        limits_slots: bool,
        queues_dependants: bool,
        fail: HashSet<&'static str>,
        launched: Vec<(String, Vec<usize>)>,
        running: usize,
        max_running: usize,
    }

    impl Fake {
        fn new(store: &Store) -> Fake {
            Fake {
                store: store.clone(),
                limits_slots: true,
                queues_dependants: false,
                fail: HashSet::new(),
                launched: Vec::new(),
                running: 0,
                max_running: 0,
            }
        }

        fn names(&self) -> BTreeSet<&str> {
            self.launched.iter().map(|(n, _)| n.as_str()).collect()
        }
    }

    impl Backend for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn limits_slots(&self) -> bool {
            self.limits_slots
        }
        fn queues_dependants(&self) -> bool {
            self.queues_dependants
        }
        fn launch(&mut self, l: Launch<'_>, events: &Sender<ExecEvent>) -> Result<(), String> {
            assert!(l.job_file.is_file(), "the job file is written before the launch");
            self.launched.push((l.job.stage.clone(), l.after.to_vec()));
            self.running += 1;
            self.max_running = self.max_running.max(self.running);
            let code = if self.fail.contains(l.job.stage.as_str()) {
                1
            } else {
                let lock = self.store.lock(&l.job.key).unwrap();
                let temp = self.store.new_temp(&l.job.key, &lock).unwrap();
                let record = Record {
                    key: l.job.key.clone(),
                    inputs: l.job.inputs.clone(),
                    experiment: l.job.experiment.clone(),
                    variant: l.job.variant.clone(),
                    stage: l.job.stage.clone(),
                    external_paths: Default::default(),
                    started_unix: 0,
                    seconds: 0.5,
                    host: "fake".into(),
                    engine_version: "0".into(),
                    outputs: vec![],
                    summary: Default::default(),
                };
                self.store.publish(temp, record, None, &lock).unwrap();
                0
            };
            events.send(ExecEvent::Exited { idx: l.idx, code: Some(code) }).unwrap();
            Ok(())
        }
        fn cancel(&mut self, _force: bool) {}
        fn finished(&mut self, _idx: usize) {
            self.running -= 1;
        }
    }

    const CHAIN: &str = "[stages.a]\nkind = \"step\"\n[stages.b]\nkind = \"step\"\nneeds = [\"a\"]\n\
                         [stages.c]\nkind = \"step\"\nneeds = [\"b\"]\n[stages.free]\nkind = \"step\"\n";

    fn run(p: &Plan, store: &Store, backend: &mut Fake, force: &[String], jobs: usize, fail_fast: bool) -> RunReport {
        let schedule = Schedule::new(p, store, force);
        let opts = RunOptions { jobs, gpus: Some(0), fail_fast };
        execute(p, store, &schedule, backend, &opts, &RunDisplay::new(true))
    }

    fn status_of(p: &Plan, report: &RunReport, name: &str) -> Status {
        report.outcomes[p.jobs.iter().position(|j| j.stage.name == name).unwrap()].status
    }

    #[test]
    fn cached_stages_never_reach_the_back_end_and_forced_ones_do() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let p = plan(dir.path(), CHAIN);
        let mut first = Fake::new(&store);
        let report = run(&p, &store, &mut first, &[], 2, false);
        assert_eq!(first.names(), ["a", "b", "c", "free"].into());
        assert!(report.outcomes.iter().all(|o| o.status == Status::Ran), "{report:?}");

        let mut again = Fake::new(&store);
        let report = run(&p, &store, &mut again, &[], 2, false);
        assert!(again.launched.is_empty(), "{:?}", again.launched);
        assert!(report.outcomes.iter().all(|o| o.status == Status::Cached));

        let mut forced = Fake::new(&store);
        let report = run(&p, &store, &mut forced, &["b".to_string()], 2, false);
        assert_eq!(forced.names(), ["b"].into(), "c keeps its key: it stays cached");
        assert_eq!(status_of(&p, &report, "b"), Status::Ran);
        assert_eq!(status_of(&p, &report, "c"), Status::Cached);
    }

    #[test]
    fn a_failure_skips_its_dependants_and_fail_fast_stops_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let p = plan(dir.path(), CHAIN);
        let mut fake = Fake::new(&store);
        fake.fail.insert("a");
        let report = run(&p, &store, &mut fake, &[], 1, false);
        assert_eq!(fake.names(), ["a", "free"].into());
        assert_eq!(status_of(&p, &report, "a"), Status::Failed);
        assert_eq!(status_of(&p, &report, "b"), Status::Skipped);
        assert_eq!(status_of(&p, &report, "c"), Status::Skipped);
        assert_eq!(status_of(&p, &report, "free"), Status::Ran);
        assert!(report.failed());
        // The failed attempt is remembered, so gc keeps its resume state.
        let a = &p.jobs.iter().find(|j| j.stage.name == "a").unwrap().key;
        assert!(store.latest_keys().contains(a));

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let p = plan(dir.path(), CHAIN);
        let mut fake = Fake::new(&store);
        fake.fail.insert("a");
        fake.fail.insert("free");
        let report = run(&p, &store, &mut fake, &[], 1, true);
        assert_eq!(fake.launched.len(), 1, "--fail-fast launches nothing after the first failure: {:?}", fake.launched);
        assert_eq!(report.outcomes.iter().filter(|o| o.status == Status::Failed).count(), 1);
    }

    #[test]
    fn slots_bound_what_the_back_end_runs_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let p = plan(dir.path(), &(0..5).map(|i| format!("[stages.s{i}]\nkind = \"step\"\n")).collect::<String>());
        let mut fake = Fake::new(&store);
        run(&p, &store, &mut fake, &[], 2, false);
        assert_eq!(fake.launched.len(), 5);
        assert_eq!(fake.max_running, 2);
    }

    #[test]
    fn a_back_end_that_queues_dependants_gets_them_at_once_with_what_they_wait_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let p = plan(dir.path(), CHAIN);
        let mut fake = Fake::new(&store);
        fake.limits_slots = false;
        fake.queues_dependants = true;
        run(&p, &store, &mut fake, &[], 1, false);
        assert_eq!(fake.max_running, 4, "the whole DAG is handed over before anything ends");
        let idx = |n: &str| p.jobs.iter().position(|j| j.stage.name == n).unwrap();
        let after = |n: &str| fake.launched.iter().find(|(s, _)| s == n).unwrap().1.clone();
        assert_eq!(after("a"), Vec::<usize>::new());
        assert_eq!(after("b"), [idx("a")]);
        assert_eq!(after("c"), [idx("b")]);
    }
}
