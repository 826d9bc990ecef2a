//! Local execution: each stage runs as a child process (`<worker> exec-stage --job FILE`), so a
//! crashing stage cannot take the run down, its stderr becomes its log, and Ctrl-C and kills
//! behave the same locally and on Slurm.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use super::backend::{Backend, ExecEvent, Launch};
use super::events::{EVENT_PREFIX, WorkerEvent};

#[derive(Default)]
pub struct LocalBackend {
    children: Vec<(usize, Arc<Mutex<Child>>, u32)>,
    /// Open handles on the worker executables, taken at their first use: workers start from
    /// `/proc/<pid>/fd/<n>`, so rebuilding the binaries during a long run (which replaces the
    /// files) neither breaks the run nor mixes new code into keys computed by the old.
    pinned: std::collections::HashMap<PathBuf, (std::fs::File, PathBuf)>,
}

impl LocalBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    fn limits_slots(&self) -> bool {
        true
    }

    fn launch(&mut self, launch: Launch<'_>, events: &Sender<ExecEvent>) -> Result<(), String> {
        let log = std::fs::File::create(launch.log).map_err(|e| format!("{}: {e}", launch.log.display()))?;
        let exe = self.pinned_exe(launch.exe)?;
        let mut cmd = Command::new(&exe);
        cmd.arg("exec-stage")
            .arg("--job")
            .arg(launch.job_file)
            .env("RAYON_NUM_THREADS", launch.threads.to_string())
            .env("OMP_NUM_THREADS", launch.threads.to_string())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", launch.exe.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let child = Arc::new(Mutex::new(child));
        let idx = launch.idx;
        let log_path: PathBuf = launch.log.to_path_buf();
        let tx = events.clone();
        let waiter = child.clone();
        std::thread::spawn(move || {
            // Progress events first; anything else a stage prints on stdout goes to its log.
            let mut stray = Vec::new();
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                match line.strip_prefix(EVENT_PREFIX).and_then(|j| serde_json::from_str::<WorkerEvent>(j).ok()) {
                    Some(event) => {
                        let _ = tx.send(ExecEvent::Worker { idx, event });
                    }
                    None => stray.push(line),
                }
            }
            if !stray.is_empty() {
                use std::io::Write;
                if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&log_path) {
                    let _ = writeln!(f, "{}", stray.join("\n"));
                }
            }
            let status = waiter.lock().map(|mut c| c.wait());
            let code = match status {
                Ok(Ok(s)) => s.code().or_else(|| {
                    use std::os::unix::process::ExitStatusExt;
                    s.signal().map(|sig| 128 + sig)
                }),
                _ => None,
            };
            let _ = tx.send(ExecEvent::Exited { idx, code });
        });
        self.children.push((idx, child, pid));
        Ok(())
    }

    fn cancel(&mut self, force: bool) {
        for (_, _, pid) in &self.children {
            let sig = if force { libc::SIGKILL } else { libc::SIGINT };
            // SAFETY: kill(2) on a pid we spawned; at worst the process is already gone.
            unsafe {
                libc::kill(*pid as libc::pid_t, sig);
            }
        }
    }

    fn finished(&mut self, idx: usize) {
        self.children.retain(|(i, _, _)| *i != idx);
    }

    fn prepare(&mut self, _to_run: &[usize], executables: &[PathBuf]) {
        self.pin(executables);
    }
}

impl LocalBackend {
    /// Pins the executables a run will need, before any of them starts.
    pub fn pin(&mut self, exes: &[PathBuf]) {
        for e in exes {
            let _ = self.pinned_exe(e);
        }
    }

    fn pinned_exe(&mut self, exe: &Path) -> Result<PathBuf, String> {
        if let Some((_, p)) = self.pinned.get(exe) {
            return Ok(p.clone());
        }
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(exe).map_err(|e| format!("cannot open {}: {e}", exe.display()))?;
        let via_proc = PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd()));
        let path = if via_proc.exists() { via_proc } else { exe.to_path_buf() };
        self.pinned.insert(exe.to_path_buf(), (file, path.clone()));
        Ok(path)
    }
}

/// Workers die with `pipeline run` (Linux): a SIGKILLed run leaves no orphan that could still
/// publish, only a stale temporary directory.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and only affects the child being created.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// The executable that runs stages of this kind: the current one, or a named sibling.
pub fn worker_exe(worker: Option<&str>) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot locate the running executable: {e}"))?;
    // A rebuild since this process started replaced the file: Linux reports "<path> (deleted)",
    // and the running image stays reachable as /proc/self/exe.
    let replaced = me.to_string_lossy().ends_with(" (deleted)");
    let Some(name) = worker else {
        return Ok(if replaced { PathBuf::from("/proc/self/exe") } else { me });
    };
    let me = if replaced { PathBuf::from(me.to_string_lossy().trim_end_matches(" (deleted)")) } else { me };
    let sibling = me.parent().unwrap_or(Path::new(".")).join(name);
    if sibling.is_file() {
        Ok(sibling)
    } else {
        Err(format!(
            "this stage runs in `{name}`, which is not next to {} (build the whole workspace: cargo build --release)",
            me.display()
        ))
    }
}
