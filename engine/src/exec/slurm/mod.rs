//! The Slurm back-end: every ready, uncached stage becomes one batch job that runs the same
//! worker as a local run (`<exe> exec-stage --job FILE`) against the shared cache.
//!
//! Decisions (docs/slurm.md explains them to users):
//!
//! - **Dependencies are Slurm's.** A stage is submitted as soon as the stages it needs are
//!   submitted, with `--dependency=afterok:<their jobs>` and `--kill-on-invalid-dep=yes`, so the
//!   cluster holds the whole DAG: it starts each stage as soon as its inputs exist, whatever the
//!   poll interval, and finishes the pipeline even if `pipeline run` goes away. A failed job's
//!   dependants are cancelled by Slurm and shown as skipped.
//! - **Cached stages are never submitted**: the back-end only sees the to-run set of the run's
//!   [`Schedule`] (the cache lookup, done once in front of every back-end).
//! - **Job records** (`jobs/<key>.slurm.json`, see [`record`]) let a later run attach to jobs
//!   still queued or running instead of submitting them again; `pipeline status` shows them.
//! - **Ctrl-C leaves the jobs running** (so do SIGTERM and SIGHUP, e.g. a dropped ssh session):
//!   a 12-hour training job should not die with a terminal. The run lists them, says that the
//!   same command attaches to them, and prints the `scancel` command that cancels them.
//!   `--fail-fast` cancels the run's other jobs at the first failure.
//! - **Jobs run a copy of the executable** made at submission ([`snapshot`]): a rebuild while
//!   jobs are queued cannot publish new code's output under old keys.
//! - **Polling** is one `squeue` for all jobs every `poll_seconds`, plus one `scontrol show job`
//!   per finished job for its exit code (`sacct` once slurmctld has forgotten it).

pub mod command;
pub mod config;
mod poll;
pub mod record;
pub mod script;
mod snapshot;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::Sender;

use self::command::{QueuedJob, SlurmError};
pub use self::config::SlurmConfig;
use self::poll::{Poller, Shared, TrackedJob};
use self::record::{JobPaths, SubmittedJob, now_unix_ms};
use super::backend::{Backend, ExecEvent, Interruption, JobStatus, Launch};
use super::label;
use super::scheduler::Schedule;
use crate::key::StageKey;
use crate::plan::Plan;
use crate::store::Store;

pub struct SlurmBackend {
    config: SlurmConfig,
    store: Store,
    /// Jobs start in the directory `pipeline run` was started from, as local workers do.
    workdir: PathBuf,
    shared: Arc<Mutex<Shared>>,
    poller_started: bool,
    /// Jobs of an earlier run still queued or running, by key: launching such a stage attaches.
    earlier: HashMap<StageKey, (SubmittedJob, QueuedJob)>,
    /// Labels of the plan's jobs, for messages about the stages a job waits for.
    labels: Vec<String>,
    executables: snapshot::Snapshots,
}

impl SlurmBackend {
    /// Prepares to run `schedule`'s stages of `plan`: finds the jobs an earlier run left queued
    /// or running, and checks that the Slurm commands are here when anything is to be submitted.
    pub fn new(
        config: SlurmConfig,
        store: &Store,
        plan: &Plan,
        schedule: &Schedule,
    ) -> Result<SlurmBackend, SlurmError> {
        let to_run: Vec<&StageKey> = schedule.to_run().map(|i| &plan.jobs[i].key).collect();
        let earlier = if to_run.is_empty() { HashMap::new() } else { live_jobs(store, &to_run)? };
        if !to_run.is_empty() && earlier.is_empty() {
            command::check_installed()?;
        }
        Ok(SlurmBackend {
            config,
            store: store.clone(),
            workdir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            shared: Arc::new(Mutex::new(Shared::default())),
            poller_started: false,
            earlier,
            labels: plan.jobs.iter().map(|j| label(plan, &j.stage.variant, &j.stage.name)).collect(),
            executables: snapshot::Snapshots::default(),
        })
    }

    fn start_poller(&mut self, events: &Sender<ExecEvent>) {
        if !self.poller_started {
            self.poller_started = true;
            Poller {
                shared: self.shared.clone(),
                events: events.clone(),
                interval: self.config.poll,
                experiment_file: self.config.file.clone(),
            }
            .spawn();
        }
    }

    fn track(&self, idx: usize, job: TrackedJob) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.jobs.insert(idx, job);
        }
    }

    fn tracked_ids(&self) -> Vec<String> {
        self.shared.lock().map(|s| s.jobs.values().map(|j| j.job_id.clone()).collect()).unwrap_or_default()
    }
}

impl Drop for SlurmBackend {
    fn drop(&mut self) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.stopped = true;
        }
    }
}

impl Backend for SlurmBackend {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn limits_slots(&self) -> bool {
        false
    }

    fn queues_dependants(&self) -> bool {
        true
    }

    fn adopts(&self, key: &StageKey) -> bool {
        self.earlier.contains_key(key)
    }

    fn notes(&self) -> Vec<String> {
        local_cache_warning(self.store.root()).into_iter().collect()
    }

    fn launch(&mut self, launch: Launch<'_>, events: &Sender<ExecEvent>) -> Result<(), String> {
        self.start_poller(events);
        let job = launch.job;
        let paths = JobPaths::new(&self.store, &job.key);
        let kind = job.inputs.kind.clone();
        let after_labels: Vec<String> = launch.after.iter().map(|&d| self.labels[d].clone()).collect();
        let mem = self
            .config
            .mem
            .for_kind(&kind)
            .map(String::from)
            .or_else(|| (launch.resources.memory_mb > 0).then(|| format!("{}M", launch.resources.memory_mb)));
        let tracked = |job_id: String, state: String| TrackedJob {
            job_id,
            kind: kind.clone(),
            paths: paths.clone(),
            after: after_labels.clone(),
            time_limit: self.config.time.for_kind(&kind).map(String::from),
            mem: mem.clone(),
            state,
            events_offset: 0,
            cancelled_by_run: false,
        };

        if let Some((submitted, queued)) = self.earlier.remove(&job.key) {
            let detail = format!(
                "Slurm job {} of an earlier run ({}{})",
                submitted.job_id,
                queued.state,
                if queued.state == "RUNNING" {
                    format!(" on {} for {}", queued.nodes, queued.elapsed)
                } else {
                    String::new()
                }
            );
            self.track(launch.idx, tracked(submitted.job_id, String::new()));
            let _ = events.send(ExecEvent::Note { idx: launch.idx, verb: "attached", detail });
            return Ok(());
        }

        let after_ids: Vec<String> = {
            let shared = self.shared.lock().map_err(|_| "internal: the Slurm poller died".to_string())?;
            launch
                .after
                .iter()
                .map(|d| {
                    shared
                        .jobs
                        .get(d)
                        .map(|j| j.job_id.clone())
                        .ok_or_else(|| format!("internal: `{}` is not a Slurm job of this run", self.labels[*d]))
                })
                .collect::<Result<_, _>>()?
        };
        let name = script::job_name(&job.experiment, &job.variant, &job.stage);
        let exe = self.executables.of(launch.exe, &self.store.root().join("jobs").join("bin"))?;
        let submission =
            script::submission(&self.config, &Launch { exe: &exe, ..launch }, &paths, &name, &after_ids, &self.workdir);
        crate::atomic::write_atomic(&paths.script, submission.script.as_bytes())
            .map_err(|e| format!("{}: {e}", paths.script.display()))?;
        // Progress of an earlier attempt must not pass for this job's (its log was moved aside).
        let _ = std::fs::remove_file(&paths.events);
        let started = Instant::now();
        let job_id = command::sbatch(&submission.args).map_err(|e| match e {
            SlurmError::Failed { stderr, .. } => format!("sbatch refused the job: {stderr}"),
            other => other.to_string(),
        })?;
        let record = SubmittedJob {
            job_id: job_id.clone(),
            name,
            script: paths.script.clone(),
            submitted_unix_ms: now_unix_ms(),
            sbatch_ms: started.elapsed().as_millis() as u64,
            after: after_ids,
            sbatch_args: submission.args,
        };
        let mut detail = format!("Slurm job {job_id}");
        if !record.after.is_empty() {
            detail.push_str(&format!(" (after {})", after_labels.join(", ")));
        }
        if let Err(e) = record.write(&paths.record) {
            detail.push_str(&format!(
                "; warning: could not record it in {} ({e}): a rerun will not attach to it",
                paths.record.display()
            ));
        }
        self.track(launch.idx, tracked(job_id, String::new()));
        let _ = events.send(ExecEvent::Note { idx: launch.idx, verb: "submitted", detail });
        Ok(())
    }

    /// `--fail-fast`: cancels every job of this run.
    fn cancel(&mut self, _force: bool) {
        let ids = self.tracked_ids();
        if let Ok(mut shared) = self.shared.lock() {
            for j in shared.jobs.values_mut() {
                j.cancelled_by_run = true;
            }
        }
        let ids: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
        if let Err(e) = command::scancel(&ids) {
            tracing::warn!("could not cancel the run's Slurm jobs: {e}");
        }
    }

    fn finished(&mut self, idx: usize) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.jobs.remove(&idx);
        }
    }

    /// Leaves every job queued or running, and says how to attach to or cancel them.
    fn interrupt(&mut self) -> Interruption {
        let jobs = self.shared.lock().map(|mut s| std::mem::take(&mut s.jobs)).unwrap_or_default();
        if jobs.is_empty() {
            return Interruption::default();
        }
        let ids: Vec<&str> = jobs.values().map(|j| j.job_id.as_str()).collect();
        // The poller's view may be a poll old; one squeue makes the lines below exact.
        let now = command::squeue(&ids).unwrap_or_default();
        let note = format!(
            "{} Slurm job{} left queued or running. Run the same command again to attach to {} (nothing is \
             submitted twice); to cancel {}: scancel {}",
            jobs.len(),
            if jobs.len() == 1 { " is" } else { "s are" },
            if jobs.len() == 1 { "it" } else { "them" },
            if jobs.len() == 1 { "it" } else { "them" },
            ids.join(" ")
        );
        let left_running = jobs
            .iter()
            .map(|(idx, j)| {
                let state = match now.get(&j.job_id).map(|q| q.state.as_str()).unwrap_or(&j.state) {
                    "" => "submitted".to_string(),
                    state => state.to_lowercase(),
                };
                (*idx, format!("Slurm job {} ({state}) keeps going", j.job_id))
            })
            .collect();
        Interruption { left_running, note: Some(note) }
    }
}

/// Jobs recorded for `keys` that Slurm still runs or queues, checked to be ours by their script.
fn live_jobs(store: &Store, keys: &[&StageKey]) -> Result<HashMap<StageKey, (SubmittedJob, QueuedJob)>, SlurmError> {
    let recorded: Vec<(StageKey, SubmittedJob)> = keys
        .iter()
        .filter_map(|k| SubmittedJob::read(&JobPaths::new(store, k).record).map(|r| ((*k).clone(), r)))
        .collect();
    if recorded.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<&str> = recorded.iter().map(|(_, r)| r.job_id.as_str()).collect();
    let queued = command::squeue(&ids)?;
    Ok(recorded
        .into_iter()
        .filter_map(|(key, r)| {
            let q = queued.get(&r.job_id)?;
            (q.is_live() && q.command == r.script.to_string_lossy()).then(|| (key, (r, q.clone())))
        })
        .collect())
}

/// The latest Slurm job of each of `keys` that Slurm still knows (one `squeue` for all).
/// Keys never submitted are absent; so are jobs slurmctld has forgotten.
pub fn job_statuses(store: &Store, keys: &[&StageKey]) -> HashMap<StageKey, JobStatus> {
    let recorded: Vec<(StageKey, SubmittedJob)> = keys
        .iter()
        .filter_map(|k| SubmittedJob::read(&JobPaths::new(store, k).record).map(|r| ((*k).clone(), r)))
        .collect();
    if recorded.is_empty() {
        return HashMap::new();
    }
    let ids: Vec<&str> = recorded.iter().map(|(_, r)| r.job_id.as_str()).collect();
    match command::squeue(&ids) {
        Ok(queued) => recorded
            .into_iter()
            .filter_map(|(key, r)| {
                let q = queued.get(&r.job_id).filter(|q| q.command == r.script.to_string_lossy())?;
                let id = &r.job_id;
                let description = match q.state.as_str() {
                    "RUNNING" => format!("Slurm job {id} RUNNING on {} for {}", q.nodes, q.elapsed),
                    "PENDING" => format!("Slurm job {id} PENDING ({})", q.reason),
                    state => format!("Slurm job {id} {state}"),
                };
                let live = q.is_live();
                Some((
                    key,
                    JobStatus {
                        backend: "slurm",
                        job_id: r.job_id,
                        state: Some(q.state.clone()),
                        live,
                        queued: live && q.state == "PENDING",
                        description,
                    },
                ))
            })
            .collect(),
        Err(e) => {
            let note = match e {
                SlurmError::NotInstalled { .. } => "no squeue on this machine".to_string(),
                ref other => other.to_string(),
            };
            recorded
                .into_iter()
                .map(|(key, r)| {
                    let description = format!("Slurm job {}, state unknown ({note})", r.job_id);
                    let status = JobStatus {
                        backend: "slurm",
                        job_id: r.job_id,
                        state: None,
                        live: false,
                        queued: false,
                        description,
                    };
                    (key, status)
                })
                .collect()
        }
    }
}

/// A warning when the cache is on a file system that only this machine sees (ext4, xfs, btrfs,
/// tmpfs, overlay, zfs): jobs on other nodes would find neither their job files nor their
/// inputs. Network and cluster file systems, and anything unrecognised, pass silently.
fn local_cache_warning(cache: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(cache.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs(2) with a NUL-terminated path and a zeroed out-buffer of the right type.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut fs) } != 0 {
        return None;
    }
    let name = match fs.f_type as u64 {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x2FC1_2FC1 => "zfs",
        _ => return None,
    };
    Some(format!(
        "note: the cache {} is on {name}, a file system local to this machine: Slurm jobs on other nodes \
         cannot see it. Unless the cluster is this machine, put the cache on the cluster's shared file \
         system (--cache-dir or PIPELINE_CACHE).",
        cache.display()
    ))
}
