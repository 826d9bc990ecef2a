//! Helpers shared by the end-to-end tests: throwaway project directories and the binaries.
#![allow(dead_code)]

pub mod slurm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The engine test bed binary (built by cargo for this package's tests).
pub fn testbed() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pipeline-testbed"))
}

/// The product binary: `PIPELINE_BIN`, else next to the test bed (same target directory).
pub fn pipeline_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PIPELINE_BIN") {
        return PathBuf::from(p);
    }
    let p = testbed().with_file_name("pipeline");
    assert!(
        p.is_file(),
        "{} is missing: build it first (bin/test does: cargo build --release --bins), or set PIPELINE_BIN",
        p.display()
    );
    p
}

pub struct Project {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
}

impl Project {
    pub fn new(bin: PathBuf) -> Project {
        Project { dir: tempfile::tempdir().expect("tempdir"), bin }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, text).unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).current_dir(self.dir.path()).env_remove("PIPELINE_CACHE").env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawn")
    }

    /// `run EXP --json`: stage name (with variant when not default) → status.
    pub fn run_json(&self, exp: &str) -> BTreeMap<String, String> {
        let out = self.run(&["run", exp, "--json"]);
        assert!(out.status.success(), "run failed:\n{}\n{}", stdout(&out), stderr(&out));
        statuses(&out)
    }

    /// Every published entry in the cache, with a check that none is partial.
    pub fn published(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let objects = self.path("cache/objects");
        for shard in std::fs::read_dir(&objects).into_iter().flatten().flatten() {
            for e in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                assert!(e.path().join("record.json").is_file(), "partial cache entry {}", e.path().display());
                assert!(e.path().join("out").is_dir(), "partial cache entry {}", e.path().display());
                out.push(e.path());
            }
        }
        out
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn statuses(out: &Output) -> BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", stdout(out), stderr(out)));
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| {
            let stage = r["stage"].as_str().unwrap();
            let variant = r["variant"].as_str().unwrap();
            let name = if variant == "default" { stage.to_string() } else { format!("{stage}@{variant}") };
            (name, r["status"].as_str().unwrap().to_string())
        })
        .collect()
}

/// The stages with a given status, sorted.
pub fn with_status(map: &BTreeMap<String, String>, status: &str) -> Vec<String> {
    map.iter().filter(|(_, s)| *s == status).map(|(k, _)| k.clone()).collect()
}

pub fn wait_for(what: &str, timeout_s: u64, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed().as_secs() < timeout_s, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Finds a file named `name` anywhere under `dir`.
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name() == name {
                return Some(p);
            }
        }
    }
    None
}

/// The key of a stage of an experiment, from `status --json`.
pub fn key_of(p: &Project, exp: &str, stage: &str) -> String {
    let out = p.run(&["status", exp, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json ({e}):\n{}\n{}", stdout(&out), stderr(&out)));
    let row = v.as_array().unwrap().iter().find(|r| r["stage"] == stage).unwrap_or_else(|| panic!("no stage {stage}"));
    row["key"].as_str().unwrap().to_string()
}

/// Waits until the stage with `key` is inside its run function: the test bed's `.started`
/// marker is in its temporary output (other stages' markers do not count).
pub fn wait_until_stage_runs(p: &Project, key: &str) {
    wait_for(&format!("the stage {} to run", &key[..12]), 60, || {
        std::fs::read_dir(p.path("cache/tmp"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(key) && e.path().join("out/.started").exists())
    });
}
