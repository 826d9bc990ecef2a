//! The Slurm client commands the executor drives (`sbatch`, `squeue`, `scontrol`, `scancel`,
//! `sacct`) and parsers for what they print. As HyperQueue does, it runs the commands instead of
//! linking libslurm: whatever works in the user's shell works here, across Slurm versions.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long a query may take before the run treats slurmctld as unreachable.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error(
        "`{program}` was not found on PATH: the Slurm executor needs the Slurm client commands (sbatch, squeue, scontrol, scancel); run on a machine that has them (a login node), or use --executor local"
    )]
    NotInstalled { program: String },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed { command: String, status: String, stderr: String },
    #[error("`{command}` did not answer within {} s (is slurmctld reachable?)", timeout.as_secs())]
    TimedOut { command: String, timeout: Duration },
    #[error("`{command}` printed something unexpected: {output:?}")]
    Unexpected { command: String, output: String },
    #[error("could not run `{command}`: {source}")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
    pub status: String,
}

/// Runs a command to its end or `timeout`, whichever comes first (then it is killed).
pub fn run(program: &str, args: &[String], timeout: Duration) -> Result<Output, SlurmError> {
    let command = std::iter::once(program).chain(args.iter().map(|s| s.as_str())).collect::<Vec<_>>().join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SlurmError::NotInstalled { program: program.to_string() },
            _ => SlurmError::Io { command: command.clone(), source },
        })?;
    let pid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(e) = stderr.as_mut() {
                let _ = e.read_to_string(&mut text);
            }
            text
        });
        let mut out = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut out);
        }
        let err = err_reader.join().unwrap_or_default();
        let _ = tx.send((child.wait(), out, err));
    });
    match rx.recv_timeout(timeout) {
        Ok((Ok(status), stdout, stderr)) => Ok(Output {
            stdout,
            stderr: stderr.trim().to_string(),
            success: status.success(),
            status: status.to_string(),
        }),
        Ok((Err(source), _, _)) => Err(SlurmError::Io { command, source }),
        Err(_) => {
            // SAFETY: kill(2) on the child we spawned, which has not been reaped (its waiter is
            // still blocked on it), so the pid cannot have been reused.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            Err(SlurmError::TimedOut { command, timeout })
        }
    }
}

/// Runs a command and insists on success.
fn run_ok(program: &str, args: &[String], timeout: Duration) -> Result<Output, SlurmError> {
    let out = run(program, args, timeout)?;
    if out.success {
        Ok(out)
    } else {
        Err(SlurmError::Failed {
            command: std::iter::once(program).chain(args.iter().map(|s| s.as_str())).collect::<Vec<_>>().join(" "),
            status: out.status,
            stderr: if out.stderr.is_empty() { out.stdout.trim().to_string() } else { out.stderr },
        })
    }
}

/// Fails early, with advice, where the Slurm client commands are missing.
pub fn check_installed() -> Result<(), SlurmError> {
    run_ok("sbatch", &["--version".to_string()], QUERY_TIMEOUT).map(|_| ())
}

/// Submits a batch script; `args` are sbatch's options, the script path last. Returns the id.
pub fn sbatch(args: &[String]) -> Result<String, SlurmError> {
    let mut all = vec!["--parsable".to_string()];
    all.extend(args.iter().cloned());
    let out = run_ok("sbatch", &all, QUERY_TIMEOUT)?;
    parse_parsable(&out.stdout).ok_or_else(|| SlurmError::Unexpected {
        command: format!("sbatch {}", all.join(" ")),
        output: out.stdout.clone(),
    })
}

/// `sbatch --parsable` prints `ID` or `ID;CLUSTER`.
pub fn parse_parsable(stdout: &str) -> Option<String> {
    let line = stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let id = line.split(';').next()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

/// One job as `squeue` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: String,
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, …
    pub state: String,
    /// Why it is pending (`Priority`, `Resources`, `Dependency`) or how it ended.
    pub reason: String,
    pub nodes: String,
    /// Time used so far (`M:SS`, `H:MM:SS`, `D-HH:MM:SS`).
    pub elapsed: String,
    /// The batch script it runs: the job's identity, since job ids are reused after a
    /// slurmctld reset.
    pub command: String,
}

impl QueuedJob {
    pub fn is_live(&self) -> bool {
        !is_final(&self.state)
    }
}

/// Whether a job state is an end state (the job will not run again by itself).
pub fn is_final(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "OUT_OF_MEMORY"
            | "NODE_FAIL"
            | "PREEMPTED"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "REVOKED"
            | "SPECIAL_EXIT"
    )
}

const SQUEUE_FORMAT: &str = "%i|%T|%r|%N|%M|%o";

/// Every listed job slurmctld still knows (finished ones for `MinJobAge` seconds), by id. One
/// call for all jobs, so polling costs the controller one RPC however large the pipeline.
pub fn squeue(ids: &[&str]) -> Result<HashMap<String, QueuedJob>, SlurmError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let args = vec![
        "--noheader".to_string(),
        "--states=all".to_string(),
        format!("--jobs={}", ids.join(",")),
        format!("--format={SQUEUE_FORMAT}"),
    ];
    let out = run("squeue", &args, QUERY_TIMEOUT)?;
    if !out.success {
        // Every id unknown (purged after MinJobAge) is an error to squeue, not an empty list.
        if out.stderr.contains("Invalid job id") {
            return Ok(HashMap::new());
        }
        return Err(SlurmError::Failed {
            command: format!("squeue {}", args.join(" ")),
            status: out.status,
            stderr: out.stderr,
        });
    }
    Ok(parse_squeue(&out.stdout).into_iter().map(|j| (j.id.clone(), j)).collect())
}

pub fn parse_squeue(stdout: &str) -> Vec<QueuedJob> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut f = line.trim_start().splitn(6, '|');
            let job = QueuedJob {
                id: f.next()?.trim().to_string(),
                state: f.next()?.trim().to_string(),
                reason: f.next()?.trim().to_string(),
                nodes: f.next()?.trim().to_string(),
                elapsed: f.next()?.trim().to_string(),
                command: f.next()?.trim_end().to_string(),
            };
            (!job.id.is_empty()).then_some(job)
        })
        .collect()
}

/// How a job ended, from `scontrol show job` (or `sacct` once slurmctld has forgotten it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobEnd {
    pub state: String,
    pub reason: String,
    /// The batch script's exit code, and the signal that killed it (0: none).
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub nodes: String,
    pub run_time: String,
    pub time_limit: String,
}

/// `scontrol show job -o ID`; `None` when slurmctld no longer knows the job.
pub fn scontrol_show_job(id: &str) -> Result<Option<JobEnd>, SlurmError> {
    let args = vec!["show".to_string(), "job".to_string(), "-o".to_string(), id.to_string()];
    let out = run("scontrol", &args, QUERY_TIMEOUT)?;
    if !out.success {
        if out.stderr.contains("Invalid job id") {
            return Ok(None);
        }
        return Err(SlurmError::Failed {
            command: format!("scontrol {}", args.join(" ")),
            status: out.status,
            stderr: out.stderr,
        });
    }
    Ok(parse_scontrol(&out.stdout))
}

pub fn parse_scontrol(stdout: &str) -> Option<JobEnd> {
    let fields: HashMap<&str, &str> = stdout.split_whitespace().filter_map(|token| token.split_once('=')).collect();
    let state = fields.get("JobState")?.to_string();
    let (exit_code, signal) = parse_exit_code(fields.get("ExitCode").copied().unwrap_or(""));
    Some(JobEnd {
        state,
        reason: fields.get("Reason").map(|s| s.to_string()).unwrap_or_default(),
        exit_code,
        signal,
        nodes: fields.get("NodeList").map(|s| s.to_string()).unwrap_or_default(),
        run_time: fields.get("RunTime").map(|s| s.to_string()).unwrap_or_default(),
        time_limit: fields.get("TimeLimit").map(|s| s.to_string()).unwrap_or_default(),
    })
}

/// `EXIT:SIGNAL`, as scontrol and sacct print exit codes.
fn parse_exit_code(text: &str) -> (Option<i32>, Option<i32>) {
    let mut parts = text.split(':');
    let code = parts.next().and_then(|s| s.trim().parse().ok());
    let signal = parts.next().and_then(|s| s.trim().parse().ok());
    (code, signal)
}

/// `sacct` for a job slurmctld has forgotten; `None` where accounting is off or has no record.
pub fn sacct(id: &str) -> Option<JobEnd> {
    let args = vec![
        "--noheader".to_string(),
        "--parsable2".to_string(),
        "--allocations".to_string(),
        format!("--jobs={id}"),
        "--format=State,ExitCode,NodeList,Elapsed,Timelimit".to_string(),
    ];
    let out = run("sacct", &args, QUERY_TIMEOUT).ok().filter(|o| o.success)?;
    parse_sacct(&out.stdout)
}

pub fn parse_sacct(stdout: &str) -> Option<JobEnd> {
    let line = stdout.lines().find(|l| !l.trim().is_empty())?;
    let f: Vec<&str> = line.split('|').collect();
    // "CANCELLED by 1234" → CANCELLED.
    let state = f.first()?.split_whitespace().next()?.to_string();
    let (exit_code, signal) = parse_exit_code(f.get(1).copied().unwrap_or(""));
    Some(JobEnd {
        state,
        reason: String::new(),
        exit_code,
        signal,
        nodes: f.get(2).unwrap_or(&"").to_string(),
        run_time: f.get(3).unwrap_or(&"").to_string(),
        time_limit: f.get(4).unwrap_or(&"").to_string(),
    })
}

/// Cancels jobs (they end as CANCELLED; their workers get SIGTERM and publish nothing).
pub fn scancel(ids: &[&str]) -> Result<(), SlurmError> {
    if ids.is_empty() {
        return Ok(());
    }
    run_ok("scancel", &ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(), QUERY_TIMEOUT).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sbatch_parsable() {
        assert_eq!(parse_parsable("1234\n").as_deref(), Some("1234"));
        assert_eq!(parse_parsable("1234;cluster1\n").as_deref(), Some("1234"));
        assert_eq!(parse_parsable("sbatch: warning: x\n77\n").as_deref(), Some("77"));
        assert_eq!(parse_parsable("Submitted batch job 5\n"), None);
        assert_eq!(parse_parsable(""), None);
    }

    #[test]
    fn parses_squeue_lines() {
        let jobs = parse_squeue(
            "1|COMPLETED|None|vm|0:01|/tmp/c/jobs/ab.slurm.sh\n\
             2|PENDING|Dependency||0:00|/tmp/with space|pipe.sh\n",
        );
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].state, "COMPLETED");
        assert!(!jobs[0].is_live());
        assert_eq!(jobs[1].reason, "Dependency");
        assert_eq!(jobs[1].command, "/tmp/with space|pipe.sh");
        assert!(jobs[1].is_live());
    }

    #[test]
    fn parses_scontrol_and_sacct() {
        let text = "JobId=3 JobName=e:a UserId=root(0) JobState=FAILED Reason=NonZeroExitCode \
                    Dependency=(null) ExitCode=1:0 RunTime=00:00:01 TimeLimit=01:00:00 NodeList=vm";
        let end = parse_scontrol(text).unwrap();
        assert_eq!(end.state, "FAILED");
        assert_eq!(end.exit_code, Some(1));
        assert_eq!(end.signal, Some(0));
        assert_eq!(end.nodes, "vm");
        assert_eq!(end.time_limit, "01:00:00");
        assert_eq!(parse_scontrol("nothing useful"), None);
        let end = parse_sacct("CANCELLED by 0|0:15|vm|00:00:03|01:00:00\n").unwrap();
        assert_eq!(end.state, "CANCELLED");
        assert_eq!(end.signal, Some(15));
    }
}
