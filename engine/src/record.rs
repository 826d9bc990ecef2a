//! The JSON record kept with every cache entry: every hashed field in clear text, plus what the
//! run produced. Its only jobs are to explain a key (`pipeline explain`) and to check an entry
//! (`--verify`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::key::{KeyInputs, StageKey};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputFile {
    pub path: String,
    pub bytes: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub key: StageKey,
    pub inputs: KeyInputs,
    pub experiment: String,
    pub variant: String,
    pub stage: String,
    /// Logical external input name → the path it was read from.
    #[serde(default)]
    pub external_paths: BTreeMap<String, PathBuf>,
    /// Unix time in seconds when the stage started.
    pub started_unix: u64,
    pub seconds: f64,
    pub host: String,
    pub engine_version: String,
    #[serde(default)]
    pub outputs: Vec<OutputFile>,
    /// Facts the stage chose to report (e.g. the sample stage's mitosis fraction).
    #[serde(default)]
    pub summary: serde_json::Map<String, serde_json::Value>,
}

/// The last key a named stage of an experiment variant resolved to; `status` and `explain`
/// compare against it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastRun {
    pub key: StageKey,
    pub inputs: KeyInputs,
    #[serde(default)]
    pub external_paths: BTreeMap<String, PathBuf>,
    pub recorded_unix: u64,
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// A record of `key` with placeholder inputs, for tests of the store and what sits on it.
#[cfg(test)]
pub(crate) fn test_record(key: &StageKey) -> Record {
    Record {
        key: key.clone(),
        inputs: KeyInputs {
            kind: "k".into(),
            version: 1,
            params: serde_json::json!({}),
            upstream: vec![],
            external: vec![],
            names: None,
        },
        experiment: "e".into(),
        variant: "default".into(),
        stage: "s".into(),
        external_paths: Default::default(),
        started_unix: 0,
        seconds: 0.0,
        host: "h".into(),
        engine_version: "0".into(),
        outputs: vec![],
        summary: Default::default(),
    }
}
