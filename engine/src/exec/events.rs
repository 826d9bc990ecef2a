//! The worker-to-run protocol: a worker (`exec-stage`) reports on its stdout, one line per event
//! prefixed with [`EVENT_PREFIX`]; local runs read the pipe, Slurm runs the job's events file.

use std::io::Write;

use serde::{Deserialize, Serialize};

/// Progress events from a worker to `pipeline run`, one JSON line each on the worker's stdout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    Progress {
        pos: u64,
        len: u64,
        message: String,
    },
    /// Another process published the key while this one waited for its lock.
    Cached,
    Waiting {
        message: String,
    },
    Done {
        seconds: f64,
    },
}

pub const EVENT_PREFIX: &str = "@pipeline ";

pub fn send_event(w: &mut dyn Write, event: &WorkerEvent) {
    if let Ok(line) = serde_json::to_string(event) {
        let _ = writeln!(w, "{EVENT_PREFIX}{line}");
        let _ = w.flush();
    }
}
