//! The poller: one thread that asks Slurm about every tracked job each `poll_seconds` (one
//! `squeue` for all of them), forwards the workers' progress from their events files, and turns
//! each job's end into the run loop's event: `Exited` for a job that completed (the loop then
//! checks that the output is published) or that the run cancelled itself, `Failed` with the
//! Slurm state and a hint for every other end.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::command::{self, JobEnd, QueuedJob};
use super::record::JobPaths;
use crate::exec::events::{EVENT_PREFIX, WorkerEvent};
use crate::exec::{ExecEvent, worker};

/// How long a completed job's published output may take to become visible here (NFS caches
/// directory entries; see docs/slurm.md).
const PUBLISH_VISIBLE_WAIT: Duration = Duration::from_secs(30);

/// A job the run waits for.
#[derive(Debug, Clone)]
pub(super) struct TrackedJob {
    pub job_id: String,
    pub kind: String,
    pub paths: JobPaths,
    /// Labels of the stages it is queued behind.
    pub after: Vec<String>,
    /// What it asked for, named in TIMEOUT and OUT_OF_MEMORY hints.
    pub time_limit: Option<String>,
    pub mem: Option<String>,
    /// The last state the poller saw (empty before the first poll).
    pub state: String,
    pub events_offset: u64,
    /// Cancelled by this run (`--fail-fast`): its end is a cancellation, not a failure.
    pub cancelled_by_run: bool,
}

#[derive(Debug, Default)]
pub(super) struct Shared {
    /// By plan job index.
    pub jobs: BTreeMap<usize, TrackedJob>,
    pub stopped: bool,
}

pub(super) struct Poller {
    pub shared: Arc<Mutex<Shared>>,
    pub events: Sender<ExecEvent>,
    pub interval: Duration,
    /// The experiment file, named in hints.
    pub experiment_file: PathBuf,
}

impl Poller {
    pub fn spawn(self) {
        std::thread::Builder::new()
            .name("slurm-poller".into())
            .spawn(move || self.run())
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the Slurm poller thread: {e}"));
    }

    fn run(self) {
        let mut unreachable_since: Option<Instant> = None;
        loop {
            std::thread::sleep(self.interval);
            let snapshot: Vec<(usize, TrackedJob)> = {
                let Ok(shared) = self.shared.lock() else { return };
                if shared.stopped {
                    return;
                }
                shared.jobs.iter().map(|(i, j)| (*i, j.clone())).collect()
            };
            if snapshot.is_empty() {
                continue;
            }
            let ids: Vec<&str> = snapshot.iter().map(|(_, j)| j.job_id.as_str()).collect();
            let queued = match command::squeue(&ids) {
                Ok(q) => {
                    unreachable_since = None;
                    q
                }
                Err(e) => {
                    // Jobs keep running while slurmctld is unreachable (maintenance): keep asking.
                    if unreachable_since.is_none() {
                        unreachable_since = Some(Instant::now());
                        for (idx, _) in &snapshot {
                            self.send_message(*idx, format!("cannot ask Slurm ({e}); retrying"));
                        }
                    }
                    continue;
                }
            };
            for (idx, job) in snapshot {
                self.forward_progress(idx, &job);
                let seen = queued.get(&job.job_id).filter(|q| q.command == job.paths.script.to_string_lossy());
                match seen {
                    Some(q) if q.is_live() => {
                        if q.state != job.state {
                            self.update(idx, |j| j.state = q.state.clone());
                            self.send_message(idx, live_message(q, &job));
                        }
                    }
                    _ => {
                        let event = self.end_event(idx, &job, seen);
                        // Read what the worker wrote last (a `Cached` event changes the outcome).
                        self.forward_progress(idx, &job);
                        let still_tracked =
                            self.shared.lock().map(|mut s| s.jobs.remove(&idx).is_some()).unwrap_or(false);
                        if still_tracked {
                            let _ = self.events.send(event);
                        }
                    }
                }
            }
        }
    }

    fn update(&self, idx: usize, f: impl FnOnce(&mut TrackedJob)) {
        if let Ok(mut shared) = self.shared.lock()
            && let Some(j) = shared.jobs.get_mut(&idx)
        {
            f(j);
        }
    }

    fn send_message(&self, idx: usize, message: String) {
        let _ = self.events.send(ExecEvent::Worker { idx, event: WorkerEvent::Waiting { message } });
    }

    /// Forwards new complete event lines of the worker's stdout file (progress coalesced).
    fn forward_progress(&self, idx: usize, job: &TrackedJob) {
        let offset = self.shared.lock().ok().and_then(|s| s.jobs.get(&idx).map(|j| j.events_offset));
        let Some(offset) = offset else { return };
        let (events, offset) = read_events(&job.paths.events, offset);
        self.update(idx, |j| j.events_offset = offset);
        let last_progress = events.iter().rposition(|e| matches!(e, WorkerEvent::Progress { .. }));
        for (i, event) in events.into_iter().enumerate() {
            if matches!(event, WorkerEvent::Progress { .. }) && Some(i) != last_progress {
                continue;
            }
            let _ = self.events.send(ExecEvent::Worker { idx, event });
        }
    }

    /// The loop's event for a job that is no longer queued or running.
    fn end_event(&self, idx: usize, job: &TrackedJob, seen: Option<&QueuedJob>) -> ExecEvent {
        let id = &job.job_id;
        let end = match command::scontrol_show_job(id) {
            Ok(Some(end)) => Some(end),
            Ok(None) => command::sacct(id),
            Err(e) => {
                tracing::warn!("scontrol show job {id}: {e}");
                None
            }
        }
        .or_else(|| {
            seen.map(|q| JobEnd {
                state: q.state.clone(),
                reason: q.reason.clone(),
                nodes: q.nodes.clone(),
                run_time: q.elapsed.clone(),
                ..JobEnd::default()
            })
        });
        let Some(end) = end else {
            if wait_visible(&job.paths.published, PUBLISH_VISIBLE_WAIT) {
                return ExecEvent::Exited { idx, code: Some(0) };
            }
            return ExecEvent::Failed {
                idx,
                message: format!(
                    "Slurm no longer knows job {id}: it ended more than MinJobAge ago and there is no accounting \
                     (sacct) to ask how; run again to resubmit"
                ),
            };
        };
        match end.state.as_str() {
            "COMPLETED" => {
                wait_visible(&job.paths.published, PUBLISH_VISIBLE_WAIT);
                ExecEvent::Exited { idx, code: Some(end.exit_code.unwrap_or(0)) }
            }
            "CANCELLED" if job.cancelled_by_run => ExecEvent::Exited { idx, code: Some(worker::EXIT_CANCELLED as i32) },
            _ => ExecEvent::Failed { idx, message: end_message(id, job, &end, &self.experiment_file) },
        }
    }
}

/// What the bar of a queued or running job says.
fn live_message(q: &QueuedJob, job: &TrackedJob) -> String {
    let id = &q.id;
    match q.state.as_str() {
        "PENDING" if q.reason == "Dependency" && !job.after.is_empty() => {
            format!(
                "queued until {} finish{} (Slurm job {id})",
                job.after.join(", "),
                if job.after.len() == 1 { "es" } else { "" }
            )
        }
        "PENDING" => format!("queued (Slurm job {id}: {})", q.reason),
        "RUNNING" => format!("running on {} (Slurm job {id})", q.nodes),
        other => format!("{} (Slurm job {id})", other.to_lowercase()),
    }
}

/// Why a job failed, in the user's terms, with what to do about it.
pub(super) fn end_message(id: &str, job: &TrackedJob, end: &JobEnd, experiment: &Path) -> String {
    let file = experiment.display();
    let kind = &job.kind;
    let after = if end.run_time.is_empty() { String::new() } else { format!(" after {}", end.run_time) };
    let on = if end.nodes.is_empty() || end.nodes == "(null)" { String::new() } else { format!(" on {}", end.nodes) };
    match end.state.as_str() {
        "FAILED" => {
            let how = match (end.exit_code, end.signal) {
                (_, Some(sig)) if sig > 0 => format!("killed by signal {sig}"),
                (Some(code), _) => format!("exit code {code}"),
                _ => "an unknown exit code".into(),
            };
            format!("Slurm job {id} FAILED ({how}){on}{after}")
        }
        "CANCELLED" if end.reason == "DependencyNeverSatisfied" => {
            format!("Slurm job {id} was CANCELLED by Slurm: a job it waited for failed")
        }
        "CANCELLED" => format!("Slurm job {id} was CANCELLED (scancel, or an administrator){on}{after}"),
        "TIMEOUT" => {
            let limit = job.time_limit.clone().unwrap_or_else(|| end.time_limit.clone());
            format!(
                "Slurm job {id} reached its TIMEOUT ({limit}){on}; give stage kind `{kind}` more time with \
                 [slurm.time] {kind} = \"…\" in {file} (a stage that saves checkpoints resumes from them)"
            )
        }
        "OUT_OF_MEMORY" => format!(
            "Slurm job {id} ran OUT_OF_MEMORY{} {on}; give stage kind `{kind}` more with [slurm.mem] {kind} = \"…\" in {file}",
            job.mem.as_deref().map(|m| format!(" (it asked for --mem={m})")).unwrap_or_default()
        ),
        "NODE_FAIL" | "BOOT_FAIL" => {
            format!("Slurm job {id} ended with {}{on}: the node failed; run again to resubmit", end.state)
        }
        "PREEMPTED" => format!("Slurm job {id} was PREEMPTED{on}{after}; run again to resubmit"),
        state => format!(
            "Slurm job {id} ended {state}{}{on}{after}",
            if end.reason.is_empty() || end.reason == "None" { String::new() } else { format!(" ({})", end.reason) }
        ),
    }
}

/// New complete lines of an events file from `offset`, parsed; the new offset.
fn read_events(path: &Path, offset: u64) -> (Vec<WorkerEvent>, u64) {
    let Ok(mut file) = std::fs::File::open(path) else { return (Vec::new(), offset) };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // A shorter file is a new attempt's.
    let offset = if len < offset { 0 } else { offset };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return (Vec::new(), offset);
    }
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else { return (Vec::new(), offset) };
    let text = String::from_utf8_lossy(&bytes[..=end]);
    let events = text
        .lines()
        .filter_map(|l| l.strip_prefix(EVENT_PREFIX).and_then(|j| serde_json::from_str::<WorkerEvent>(j).ok()))
        .collect();
    (events, offset + end as u64 + 1)
}

/// Waits until `path` exists, listing its grandparent meanwhile to refresh NFS's cached view.
fn wait_visible(path: &Path, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if path.is_file() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        if let Some(shard) = path.parent().and_then(Path::parent) {
            let _ = std::fs::read_dir(shard).map(|d| d.count());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> TrackedJob {
        let p = PathBuf::from("/c");
        TrackedJob {
            job_id: "7".into(),
            kind: "train".into(),
            paths: JobPaths {
                script: p.join("s"),
                record: p.join("r"),
                events: p.join("e"),
                log: p.join("l"),
                published: p.join("p"),
            },
            after: vec!["sample".into()],
            time_limit: Some("00:10:00".into()),
            mem: Some("2048M".into()),
            state: String::new(),
            events_offset: 0,
            cancelled_by_run: false,
        }
    }

    #[test]
    fn end_messages_name_the_state_and_what_to_do() {
        let end = |state: &str| JobEnd {
            state: state.into(),
            exit_code: Some(1),
            signal: Some(0),
            nodes: "n1".into(),
            ..JobEnd::default()
        };
        let exp = Path::new("exp.toml");
        assert_eq!(end_message("7", &job(), &end("FAILED"), exp), "Slurm job 7 FAILED (exit code 1) on n1");
        let t = end_message("7", &job(), &end("TIMEOUT"), exp);
        assert!(t.contains("TIMEOUT (00:10:00)") && t.contains("[slurm.time] train"), "{t}");
        let m = end_message("7", &job(), &end("OUT_OF_MEMORY"), exp);
        assert!(m.contains("--mem=2048M") && m.contains("[slurm.mem] train"), "{m}");
        assert!(end_message("7", &job(), &end("CANCELLED"), exp).contains("CANCELLED (scancel"));
        assert!(end_message("7", &job(), &end("NODE_FAIL"), exp).contains("run again"));
    }

    #[test]
    fn live_messages() {
        let q = |state: &str, reason: &str| QueuedJob {
            id: "7".into(),
            state: state.into(),
            reason: reason.into(),
            nodes: "n1".into(),
            elapsed: "0:01".into(),
            command: String::new(),
        };
        assert_eq!(live_message(&q("PENDING", "Dependency"), &job()), "queued until sample finishes (Slurm job 7)");
        assert_eq!(live_message(&q("PENDING", "Priority"), &job()), "queued (Slurm job 7: Priority)");
        assert_eq!(live_message(&q("RUNNING", "None"), &job()), "running on n1 (Slurm job 7)");
    }

    #[test]
    fn events_are_read_by_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e");
        let complete = format!("{EVENT_PREFIX}{{\"event\":\"cached\"}}\nstray output\n");
        std::fs::write(&p, format!("{complete}{EVENT_PREFIX}{{\"event\":\"wai")).unwrap();
        let (events, offset) = read_events(&p, 0);
        assert_eq!(offset as usize, complete.len());
        assert_eq!(events, [WorkerEvent::Cached]);
        let (again, same) = read_events(&p, offset);
        assert!(again.is_empty());
        assert_eq!(same, offset);
    }
}
