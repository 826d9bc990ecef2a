//! What a running stage sees: its params' identity, its inputs, a fresh output directory, a
//! resume directory, its threads and devices, progress reporting and cancellation.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::StageError;
use crate::exec::events::{WorkerEvent, send_event};
use crate::exec::job::JobFile;
use crate::inputs::{Artifact, ExternalFile};
use crate::key::StageKey;

/// Set by SIGINT/SIGTERM in a worker; stages poll it between units of work.
pub static CANCELLED: AtomicBool = AtomicBool::new(false);

pub struct StageContext {
    pub experiment: String,
    pub variant: String,
    pub name: String,
    pub kind: String,
    pub key: StageKey,
    /// Directory relative path params resolve against: that of the experiment file that set
    /// them (see [`crate::stage::StageDef::PATH_PARAMS`]).
    pub params_dir: PathBuf,
    /// Direct upstream artifacts, in `needs` order.
    pub inputs: Vec<Artifact>,
    /// Every upstream artifact, nearest first.
    pub ancestors: Vec<Artifact>,
    pub external: Vec<ExternalFile>,
    /// CPU threads this stage may use.
    pub threads: usize,
    /// GPU indices assigned to this stage (empty: none).
    pub devices: Vec<usize>,
    /// Where the stage is written in the experiment (`file:line:column`), for messages that
    /// point at its table.
    pub location: Option<String>,
    out_dir: PathBuf,
    resume_dir: PathBuf,
    memo_dir: Option<PathBuf>,
    progress: Progress,
    summary: Mutex<serde_json::Map<String, serde_json::Value>>,
    /// `file:line:column` of each param set in the experiment files (dotted path in the table).
    param_locations: std::collections::BTreeMap<String, String>,
}

impl StageContext {
    /// The context of the stage a job file describes, writing into `out_dir` (the temporary
    /// entry) and resuming from `resume_dir`.
    pub fn from_job(job: &JobFile, out_dir: PathBuf, resume_dir: PathBuf, progress: Progress) -> Self {
        StageContext {
            experiment: job.experiment.clone(),
            variant: job.variant.clone(),
            name: job.stage.clone(),
            kind: job.inputs.kind.clone(),
            key: job.key.clone(),
            params_dir: job.params_dir.clone(),
            inputs: job.upstream.clone(),
            ancestors: job.ancestors.clone(),
            external: job.external.clone(),
            threads: job.threads.max(1),
            devices: job.devices.clone(),
            location: job.location.clone(),
            out_dir,
            resume_dir,
            memo_dir: None,
            progress,
            summary: Mutex::new(Default::default()),
            param_locations: job.param_locations.clone(),
        }
    }

    /// Sets the store's memo directory for this stage kind (see [`Self::memo_dir`]).
    pub fn with_memo_dir(mut self, dir: PathBuf) -> Self {
        self.memo_dir = Some(dir);
        self
    }

    /// A directory shared by every run of this stage kind in the store, for facts memoised by
    /// content digest (the dataset stage records there which image files decode, so another key
    /// over the same files does not decode them again). Such a fact must not depend on params:
    /// nothing read from here may shape an output. Created on first use; `None` when the
    /// context has no store (unit tests).
    pub fn memo_dir(&self) -> Option<&Path> {
        let dir = self.memo_dir.as_deref()?;
        std::fs::create_dir_all(dir).ok()?;
        Some(dir)
    }

    /// A context outside any run, for unit tests of a stage's code and for tools: stage `name`
    /// of kind `kind` in the default variant of experiment `test`, reading `inputs`, with one
    /// thread, no devices, silent progress, and `out/` and `resume/` under `dir`.
    pub fn detached(name: &str, kind: &str, inputs: Vec<Artifact>, dir: &Path) -> Self {
        let key = crate::key::KeyInputs {
            kind: kind.to_string(),
            version: 0,
            params: serde_json::Value::Null,
            upstream: Vec::new(),
            external: Vec::new(),
            names: None,
        }
        .key();
        StageContext {
            experiment: "test".into(),
            variant: crate::spec::DEFAULT_VARIANT.into(),
            name: name.to_string(),
            kind: kind.to_string(),
            key,
            params_dir: dir.to_path_buf(),
            inputs,
            ancestors: Vec::new(),
            external: Vec::new(),
            threads: 1,
            devices: Vec::new(),
            location: None,
            out_dir: dir.join("out"),
            resume_dir: dir.join("resume"),
            memo_dir: None,
            progress: Progress::silent(),
            summary: Mutex::new(Default::default()),
            param_locations: Default::default(),
        }
    }

    /// Where the stage writes its outputs: fresh and empty, published only if the stage succeeds.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// A directory that survives a failed or killed attempt with the same key (for resuming),
    /// and is removed once the stage's output is published.
    pub fn resume_dir(&self) -> Result<&Path, StageError> {
        std::fs::create_dir_all(&self.resume_dir).map_err(|e| StageError::io(&self.resume_dir, e))?;
        Ok(&self.resume_dir)
    }

    /// The single direct upstream of `kind`.
    pub fn input(&self, kind: &str) -> Result<&Artifact, StageError> {
        let found: Vec<&Artifact> = self.inputs.iter().filter(|a| a.kind == kind).collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(StageError::msg(format!(
                "stage `{}` needs an upstream stage of kind `{kind}`; add it to `needs`",
                self.name
            ))),
            _ => Err(StageError::msg(format!(
                "stage `{}` has several upstream stages of kind `{kind}`; keep one",
                self.name
            ))),
        }
    }

    /// Every direct upstream of `kind`.
    pub fn inputs_of(&self, kind: &str) -> Vec<&Artifact> {
        self.inputs.iter().filter(|a| a.kind == kind).collect()
    }

    /// The nearest upstream (direct or not) of `kind`.
    pub fn ancestor(&self, kind: &str) -> Result<&Artifact, StageError> {
        self.ancestors.iter().find(|a| a.kind == kind).ok_or_else(|| {
            StageError::msg(format!("stage `{}` needs a `{kind}` stage upstream of it, and there is none", self.name))
        })
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Returns `Err(Cancelled)` once Ctrl-C was pressed; call it between units of work.
    pub fn check_cancelled(&self) -> Result<(), StageError> {
        if CANCELLED.load(Ordering::Relaxed) { Err(StageError::Cancelled) } else { Ok(()) }
    }

    pub fn is_cancelled(&self) -> bool {
        CANCELLED.load(Ordering::Relaxed)
    }

    /// An error about one of this stage's params that only shows at run time (it depends on the
    /// data): it names the experiment file, line and column where the param (or its nearest
    /// enclosing table) is set, or, for a param left at its default, the stage's table, and the
    /// param's full key, e.g. `exp.toml:31:1: stages.train.domain_adversarial: …`.
    pub fn param_error(&self, path: &[&str], message: impl std::fmt::Display) -> StageError {
        let dotted = path.join(".");
        let located = (0..=path.len()).rev().find_map(|n| {
            let p = path[..n].join(".");
            self.param_locations.get(&p).map(|l| (l, n == path.len()))
        });
        let key = format!("stages.{}{}{}", self.name, if dotted.is_empty() { "" } else { "." }, dotted);
        let text = match (located, &self.location) {
            (Some((loc, true)), _) => format!("{loc}: {key}: {message}"),
            (Some((loc, false)), _) => format!("{loc}: {key} (in this table): {message}"),
            (None, Some(table)) => format!("{table}: {key} (not set: its default): {message}"),
            (None, None) => format!("{key}: {message}"),
        };
        StageError::Message(text)
    }

    /// Adds a fact to the stage's record (shown by `pipeline explain`, kept in `record.json`).
    pub fn set_summary(&self, key: &str, value: impl Into<serde_json::Value>) {
        if let Ok(mut s) = self.summary.lock() {
            s.insert(key.to_string(), value.into());
        }
    }

    pub fn take_summary(&self) -> serde_json::Map<String, serde_json::Value> {
        self.summary.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default()
    }
}

/// Progress reporting of one stage: rate-limited events to the parent, or nothing.
pub struct Progress {
    sink: Option<Mutex<(Instant, Box<dyn Write + Send>)>>,
    state: Mutex<(u64, u64, String)>,
}

impl Progress {
    pub fn to_stdout() -> Progress {
        Progress {
            sink: Some(Mutex::new((Instant::now() - Duration::from_secs(1), Box::new(std::io::stdout())))),
            state: Mutex::new((0, 0, String::new())),
        }
    }

    pub fn silent() -> Progress {
        Progress { sink: None, state: Mutex::new((0, 0, String::new())) }
    }

    /// Starts a new phase of `len` units.
    pub fn start(&self, len: u64, message: &str) {
        if let Ok(mut s) = self.state.lock() {
            *s = (0, len, message.to_string());
        }
        self.emit(true);
    }

    pub fn inc(&self, n: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = (s.0 + n).min(s.1.max(s.0 + n));
        }
        self.emit(false);
    }

    pub fn set(&self, pos: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = pos;
        }
        self.emit(false);
    }

    pub fn set_message(&self, message: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.2 = message.to_string();
        }
        self.emit(false);
    }

    fn emit(&self, force: bool) {
        let Some(sink) = &self.sink else { return };
        let Ok(state) = self.state.lock().map(|s| s.clone()) else { return };
        if let Ok(mut sink) = sink.lock() {
            let now = Instant::now();
            if !force && now.duration_since(sink.0) < Duration::from_millis(100) && state.0 < state.1 {
                return;
            }
            sink.0 = now;
            send_event(&mut sink.1, &WorkerEvent::Progress { pos: state.0, len: state.1, message: state.2 });
        }
    }
}
