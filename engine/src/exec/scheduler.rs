//! Which jobs of a plan run, and when.
//!
//! [`Schedule`] is the to-run set: the cache lookup and `--force`, computed once per command.
//! Like Buck2's cache executor stacked in front of the real ones, it sits in front of every
//! back-end: `run`, `run --dry-run`, `status` and the back-ends all read it, and no back-end
//! ever sees a cached job or checks the cache itself.
//!
//! [`Scheduler`] owns the CPU and GPU slots and the state of every job while a run goes: which
//! job starts next (plan order, first that fits), which are skipped because an upstream failed,
//! and what a finished job's end means. It does no I/O; the driver ([`super::execute`]) feeds
//! it the back-end's events.

use crate::plan::Plan;
use crate::store::Store;

/// The jobs a command will run: those not in the cache, and those forced.
#[derive(Debug, Clone)]
pub struct Schedule {
    to_run: Vec<bool>,
    forced: Vec<bool>,
}

impl Schedule {
    /// Looks every job of `plan` up in `store`; `force` names stages to recompute anyway (a job
    /// is forced when any (variant, stage) it serves has a forced name).
    pub fn new(plan: &Plan, store: &Store, force: &[String]) -> Schedule {
        let forced: Vec<bool> =
            plan.jobs.iter().map(|j| j.users.iter().any(|(_, name)| force.contains(name))).collect();
        let to_run = plan.jobs.iter().zip(&forced).map(|(j, &f)| f || !store.has(&j.key)).collect();
        Schedule { to_run, forced }
    }

    /// A schedule with the given to-run and forced jobs (for tests and tools).
    pub fn from_parts(to_run: Vec<bool>, forced: Vec<bool>) -> Schedule {
        assert_eq!(to_run.len(), forced.len());
        Schedule { to_run, forced }
    }

    pub fn runs(&self, job: usize) -> bool {
        self.to_run[job]
    }

    pub fn is_forced(&self, job: usize) -> bool {
        self.forced[job]
    }

    /// Indices of the jobs to run, in plan order.
    pub fn to_run(&self) -> impl Iterator<Item = usize> + '_ {
        self.to_run.iter().enumerate().filter(|(_, r)| **r).map(|(i, _)| i)
    }

    pub fn cached_count(&self) -> usize {
        self.to_run.iter().filter(|r| !**r).count()
    }

    pub fn len(&self) -> usize {
        self.to_run.len()
    }

    pub fn is_empty(&self) -> bool {
        self.to_run.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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

    /// Whether the job's output is there for its dependants.
    pub fn succeeded(self) -> bool {
        matches!(self, Status::Cached | Status::Ran)
    }
}

/// What a back-end can do, as far as scheduling goes.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// `--jobs` and the machine's GPUs bound what runs at once (false: a cluster queues).
    pub limits_slots: bool,
    /// Dependants may be launched while their upstream runs (the back-end orders them).
    pub queues_dependants: bool,
}

/// The job to start now, with its share of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub job: usize,
    /// CPU threads it gets.
    pub cpus: usize,
    /// GPU indices it gets (`0..n` of what the job will see on a cluster).
    pub devices: Vec<usize>,
    /// Jobs it needs that are still running (only for back-ends that queue dependants).
    pub after: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Start(Start),
    /// An upstream failed: the job will not run.
    Skip(usize),
}

#[derive(Debug, Clone)]
enum State {
    Pending,
    Running { cpus: usize, gpus: Vec<usize> },
    Done(Status),
}

/// How a launched job ended, as the driver saw it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ending {
    /// The worker's exit code (128 + signal when killed); `None` when unknown.
    pub code: Option<i32>,
    /// The back-end reported a failure of its own (e.g. a cluster job state).
    pub backend_failed: bool,
    /// The job's key is published in the store now.
    pub published: bool,
    /// The worker found the key published by another process and did not compute it.
    pub cached_by_other: bool,
    /// The run was interrupted.
    pub interrupted: bool,
}

/// Exit code of a worker that was cancelled (Ctrl-C), the same as [`super::worker::EXIT_CANCELLED`].
const EXIT_CANCELLED: i32 = super::worker::EXIT_CANCELLED as i32;

pub struct Scheduler<'p> {
    plan: &'p Plan,
    states: Vec<State>,
    caps: Capabilities,
    /// CPU slots (`--jobs`).
    jobs: usize,
    free_cpus: usize,
    gpu_total: usize,
    free_gpus: Vec<usize>,
    stopped: bool,
}

impl<'p> Scheduler<'p> {
    /// `jobs` CPU slots and `gpus` GPUs (indices `0..gpus`) for `schedule`'s jobs of `plan`.
    pub fn new(plan: &'p Plan, schedule: &Schedule, jobs: usize, gpus: usize, caps: Capabilities) -> Self {
        let states = (0..plan.jobs.len())
            .map(|i| if schedule.runs(i) { State::Pending } else { State::Done(Status::Cached) })
            .collect();
        let jobs = jobs.max(1);
        Scheduler {
            plan,
            states,
            caps,
            jobs,
            free_cpus: jobs,
            gpu_total: gpus,
            free_gpus: (0..gpus).collect(),
            stopped: false,
        }
    }

    /// The next job to start or skip, in plan order, or `None` when nothing can start now
    /// (every remaining job waits for a running one or for slots, or the run stops).
    pub fn next_step(&mut self) -> Option<Next> {
        if self.stopped {
            return None;
        }
        for i in 0..self.states.len() {
            if !matches!(self.states[i], State::Pending) {
                continue;
            }
            let job = &self.plan.jobs[i];
            if self.upstream_failed(i) {
                self.states[i] = State::Done(Status::Skipped);
                return Some(Next::Skip(i));
            }
            let ready = |d: &usize| match &self.states[*d] {
                State::Done(_) => true,
                State::Running { .. } => self.caps.queues_dependants,
                State::Pending => false,
            };
            if !job.deps.iter().all(ready) {
                continue;
            }
            let res = job.stage.resources;
            let limits = self.caps.limits_slots;
            // A cluster gives a stage the CPUs it declares; only a shared machine caps them.
            let cpus = match res.cpus {
                0 => self.jobs,
                n if limits => n.min(self.jobs),
                n => n,
            };
            let want_gpus = if self.gpu_total > 0 { res.gpus.min(self.gpu_total) } else { 0 };
            if limits && (cpus > self.free_cpus || want_gpus > self.free_gpus.len()) {
                continue;
            }
            let (reserved, devices) = if limits {
                self.free_cpus -= cpus;
                let gpus: Vec<usize> = self.free_gpus.drain(..want_gpus).collect();
                (gpus.clone(), gpus)
            } else {
                (Vec::new(), (0..res.gpus).collect())
            };
            let after = job.deps.iter().copied().filter(|&d| matches!(self.states[d], State::Running { .. })).collect();
            self.states[i] = State::Running { cpus: if limits { cpus } else { 0 }, gpus: reserved };
            return Some(Next::Start(Start { job: i, cpus, devices, after }));
        }
        None
    }

    /// Records the end of a running job (or of one whose launch failed) and frees its slots.
    pub fn finish(&mut self, job: usize, status: Status) {
        if let State::Running { cpus, gpus } = std::mem::replace(&mut self.states[job], State::Done(status)) {
            self.free_cpus += cpus;
            self.free_gpus.extend(gpus);
            self.free_gpus.sort();
        }
    }

    /// What a launched job's end means: ran (or cached by another run), skipped because an
    /// upstream failed (a cluster cancels queued dependants), cancelled, or failed.
    pub fn status_of_ending(&self, job: usize, end: Ending) -> Status {
        if !end.backend_failed && end.code == Some(0) && end.published {
            if end.cached_by_other { Status::Cached } else { Status::Ran }
        } else if self.upstream_failed(job) && !end.published {
            Status::Skipped
        } else if end.code == Some(EXIT_CANCELLED) || (end.interrupted && !end.backend_failed) {
            Status::Cancelled
        } else {
            Status::Failed
        }
    }

    /// Whether a job this one needs ended without its output.
    pub fn upstream_failed(&self, job: usize) -> bool {
        self.plan.jobs[job].deps.iter().any(|&d| matches!(self.states[d], State::Done(s) if !s.succeeded()))
    }

    /// No more jobs start (`--fail-fast`, Ctrl-C).
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    pub fn is_running(&self, job: usize) -> bool {
        matches!(self.states[job], State::Running { .. })
    }

    pub fn any_running(&self) -> bool {
        self.states.iter().any(|s| matches!(s, State::Running { .. }))
    }

    /// The final status of a job, if it has one.
    pub fn status(&self, job: usize) -> Option<Status> {
        match self.states[job] {
            State::Done(s) => Some(s),
            _ => None,
        }
    }

    /// Free CPU slots and GPUs (for tests and progress displays).
    pub fn free(&self) -> (usize, Vec<usize>) {
        (self.free_cpus, self.free_gpus.clone())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;
    use crate::filedigest::DigestMemo;
    use crate::spec::Experiment;
    use crate::stage::{Registry, Resources, StageDef};

    /// A stage kind whose resources are its params.
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields, default)]
    pub struct Params {
        pub cpus: usize,
        pub gpus: usize,
    }
    impl Default for Params {
        fn default() -> Self {
            Params { cpus: 1, gpus: 0 }
        }
    }
    pub struct Step;
    impl StageDef for Step {
        type Params = Params;
        const KIND: &'static str = "step";
        const VERSION: u32 = 1;
        const SUMMARY: &'static str = "a test step";
        const NEEDS: &'static [&'static str] = &[];
        // Names in the key: stages with the same params stay separate jobs.
        const NAMES_IN_OUTPUT: bool = true;
        fn resources(p: &Params) -> Resources {
            Resources { cpus: p.cpus, gpus: p.gpus, memory_mb: 0 }
        }
    }

    /// Plans an experiment of `step` stages written as TOML stage tables.
    pub fn plan(dir: &Path, stages: &str) -> Plan {
        let path = dir.join("exp.toml");
        std::fs::write(&path, stages).unwrap();
        let mut registry = Registry::new();
        registry.declare::<Step>();
        Plan::build(Experiment::load(&path).unwrap(), &registry, &mut DigestMemo::in_memory()).unwrap()
    }

    fn idx(plan: &Plan, name: &str) -> usize {
        plan.jobs.iter().position(|j| j.stage.name == name).unwrap()
    }

    const LOCAL: Capabilities = Capabilities { limits_slots: true, queues_dependants: false };
    const CLUSTER: Capabilities = Capabilities { limits_slots: false, queues_dependants: true };

    fn all(plan: &Plan) -> Schedule {
        Schedule::from_parts(vec![true; plan.jobs.len()], vec![false; plan.jobs.len()])
    }

    fn starts(s: &mut Scheduler) -> Vec<Start> {
        let mut out = Vec::new();
        while let Some(n) = s.next_step() {
            match n {
                Next::Start(st) => out.push(st),
                Next::Skip(i) => panic!("unexpected skip of {i}"),
            }
        }
        out
    }

    /// Runs the scheduler to the end, finishing the oldest running job whenever nothing can
    /// start, and checks after every start that running jobs never share a slot or a GPU.
    fn run_to_end(s: &mut Scheduler, jobs: usize, gpus: usize) -> Vec<Vec<Start>> {
        let mut running: Vec<Start> = Vec::new();
        let mut waves = Vec::new();
        loop {
            let wave = starts(s);
            running.extend(wave.iter().cloned());
            let cpus: usize = running.iter().map(|r| r.cpus).sum();
            assert!(cpus <= jobs, "{cpus} CPUs in use of {jobs}: {running:?}");
            let mut devices: Vec<usize> = running.iter().flat_map(|r| r.devices.clone()).collect();
            devices.sort();
            let n = devices.len();
            devices.dedup();
            assert_eq!(devices.len(), n, "a GPU given twice: {running:?}");
            assert!(devices.iter().all(|&d| d < gpus), "{running:?}");
            if !wave.is_empty() {
                waves.push(wave);
            }
            if running.is_empty() {
                return waves;
            }
            let done = running.remove(0);
            s.finish(done.job, Status::Ran);
        }
    }

    #[test]
    fn cpu_slots_bound_what_runs_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(
            dir.path(),
            "[stages.a]\nkind = \"step\"\ncpus = 1\n[stages.b]\nkind = \"step\"\ncpus = 2\n\
             [stages.c]\nkind = \"step\"\ncpus = 1\n[stages.big]\nkind = \"step\"\ncpus = 9\n\
             [stages.any]\nkind = \"step\"\ncpus = 0\n",
        );
        let mut s = Scheduler::new(&p, &all(&p), 3, 0, LOCAL);
        let waves = run_to_end(&mut s, 3, 0);
        let started: Vec<Start> = waves.iter().flatten().cloned().collect();
        assert_eq!(started.len(), 5, "every job ran: {waves:?}");
        // A stage that takes any number of CPUs gets all of them; one that wants more is capped.
        assert!(started.iter().any(|st| st.job == idx(&p, "any") && st.cpus == 3));
        assert!(started.iter().any(|st| st.job == idx(&p, "big") && st.cpus == 3));
        assert!(waves.iter().any(|w| w.len() > 1), "small stages share the machine: {waves:?}");
        assert_eq!(s.free(), (3, vec![]));
    }

    #[test]
    fn gpus_go_to_one_stage_at_a_time_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(
            dir.path(),
            "[stages.a]\nkind = \"step\"\ngpus = 1\n[stages.b]\nkind = \"step\"\ngpus = 2\n\
             [stages.c]\nkind = \"step\"\ngpus = 1\n[stages.d]\nkind = \"step\"\ngpus = 1\n",
        );
        let mut s = Scheduler::new(&p, &all(&p), 8, 2, LOCAL);
        let started: Vec<Start> = run_to_end(&mut s, 8, 2).into_iter().flatten().collect();
        assert_eq!(started.len(), 4);
        let b = started.iter().find(|st| st.job == idx(&p, "b")).unwrap();
        assert_eq!(b.devices, [0, 1]);
        assert_eq!(s.free(), (8, vec![0, 1]));
        // Without GPUs on the machine a GPU stage still runs, on the CPU.
        let mut none = Scheduler::new(&p, &all(&p), 8, 0, LOCAL);
        assert!(starts(&mut none).iter().all(|st| st.devices.is_empty()));
    }

    #[test]
    fn dependants_wait_for_their_upstream_and_are_skipped_when_it_fails() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(
            dir.path(),
            "[stages.a]\nkind = \"step\"\n[stages.b]\nkind = \"step\"\nneeds = [\"a\"]\n\
             [stages.c]\nkind = \"step\"\nneeds = [\"b\"]\n[stages.free]\nkind = \"step\"\n",
        );
        let mut s = Scheduler::new(&p, &all(&p), 4, 0, LOCAL);
        let mut first: Vec<usize> = starts(&mut s).iter().map(|s| s.job).collect();
        first.sort();
        let mut expected = [idx(&p, "a"), idx(&p, "free")];
        expected.sort();
        assert_eq!(first, expected);
        s.finish(idx(&p, "a"), Status::Failed);
        assert_eq!(s.next_step(), Some(Next::Skip(idx(&p, "b"))));
        assert_eq!(s.next_step(), Some(Next::Skip(idx(&p, "c"))));
        assert_eq!(s.next_step(), None);
        assert!(s.any_running());
        s.finish(idx(&p, "free"), Status::Ran);
        assert!(!s.any_running());
    }

    #[test]
    fn a_cluster_gets_dependants_at_once_with_the_jobs_they_wait_for() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(
            dir.path(),
            "[stages.a]\nkind = \"step\"\ncpus = 16\ngpus = 2\n[stages.b]\nkind = \"step\"\nneeds = [\"a\"]\n\
             [stages.c]\nkind = \"step\"\nneeds = [\"a\", \"b\"]\n",
        );
        // No slot limits on a cluster: the stage's own CPUs and GPUs, however many `--jobs` says.
        let mut s = Scheduler::new(&p, &all(&p), 2, 0, CLUSTER);
        let (a, b, c) = (idx(&p, "a"), idx(&p, "b"), idx(&p, "c"));
        assert_eq!(
            starts(&mut s),
            [
                Start { job: a, cpus: 16, devices: vec![0, 1], after: vec![] },
                Start { job: b, cpus: 1, devices: vec![], after: vec![a] },
                Start { job: c, cpus: 1, devices: vec![], after: vec![a, b] },
            ]
        );
    }

    #[test]
    fn cached_jobs_are_done_before_anything_starts_and_stop_stops() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(dir.path(), "[stages.a]\nkind = \"step\"\n[stages.b]\nkind = \"step\"\nneeds = [\"a\"]\n");
        let (a, b) = (idx(&p, "a"), idx(&p, "b"));
        let mut to_run = vec![true; 2];
        to_run[a] = false;
        let mut s = Scheduler::new(&p, &Schedule::from_parts(to_run, vec![false; 2]), 1, 0, LOCAL);
        assert_eq!(s.status(a), Some(Status::Cached));
        let mut stopped = Scheduler::new(&p, &all(&p), 1, 0, LOCAL);
        stopped.stop();
        assert_eq!(stopped.next_step(), None);
        assert_eq!(starts(&mut s).iter().map(|s| s.job).collect::<Vec<_>>(), [b]);
    }

    #[test]
    fn endings_are_classified() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(dir.path(), "[stages.a]\nkind = \"step\"\n[stages.b]\nkind = \"step\"\nneeds = [\"a\"]\n");
        let (a, b) = (idx(&p, "a"), idx(&p, "b"));
        let mut s = Scheduler::new(&p, &all(&p), 1, 0, CLUSTER);
        starts(&mut s);
        let ok = Ending { code: Some(0), published: true, ..Ending::default() };
        assert_eq!(s.status_of_ending(a, ok), Status::Ran);
        assert_eq!(s.status_of_ending(a, Ending { cached_by_other: true, ..ok }), Status::Cached);
        assert_eq!(s.status_of_ending(a, Ending { code: Some(0), ..Ending::default() }), Status::Failed);
        assert_eq!(s.status_of_ending(a, Ending { code: Some(130), ..Ending::default() }), Status::Cancelled);
        assert_eq!(
            s.status_of_ending(a, Ending { code: None, interrupted: true, ..Ending::default() }),
            Status::Cancelled
        );
        assert_eq!(
            s.status_of_ending(a, Ending { code: Some(0), published: true, backend_failed: true, ..Ending::default() }),
            Status::Failed
        );
        s.finish(a, Status::Failed);
        // A cluster cancels the job queued behind a failed one: that is a skip, not a failure.
        assert_eq!(s.status_of_ending(b, Ending { backend_failed: true, ..Ending::default() }), Status::Skipped);
    }
}
