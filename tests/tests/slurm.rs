//! The Slurm executor against a real single-node Slurm cluster on this machine, started by
//! `tests/slurm/start.sh` (installed with apt-get if missing; root only). Where Slurm cannot be
//! installed or started the cluster tests print why and check nothing, except under `CI=true`,
//! where they fail (see `common/slurm.rs`).
//!
//! Run: cargo test --release -p e2e-tests --test slurm

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::slurm::cluster;
use common::*;

/// Four stages: `a` and `side` both need `source`, `all` needs both. `a` sleeps `A_SLEEP_MS`.
const EXP: &str = r#"[experiment]
name = "slurmy"

[stages.source]
file = "input.txt"
count_file = "count.txt"

[stages.a]
kind = "transform"
needs = ["source"]
factor = 2
sleep_ms = A_SLEEP_MS
count_file = "count.txt"

[stages.side]
kind = "transform"
needs = ["source"]
count_file = "count.txt"

[stages.all]
kind = "combine"
needs = ["a", "side"]
count_file = "count.txt"

[slurm]
poll_seconds = 0.2
time = "5"
"#;

fn project(a_sleep_ms: u64) -> Project {
    let p = Project::new(testbed());
    p.write("input.txt", "hello\n");
    p.write("exp.toml", &EXP.replace("A_SLEEP_MS", &a_sleep_ms.to_string()));
    p
}

fn slurm_cmd(p: &Project, conf: &Path, args: &[&str]) -> Command {
    let mut c = p.cmd(args);
    c.env("SLURM_CONF", conf);
    c
}

fn run_slurm(p: &Project, conf: &Path) -> Output {
    slurm_cmd(p, conf, &["run", "exp.toml", "--executor", "slurm", "--json"]).output().expect("spawn")
}

/// Stage name → key, from `status --json`.
fn keys(p: &Project) -> BTreeMap<String, String> {
    let out = p.run(&["status", "exp.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["stage"].as_str().unwrap().to_string(), r["key"].as_str().unwrap().to_string()))
        .collect()
}

/// The Slurm job id recorded for a key, once the run has submitted it.
fn recorded_job(p: &Project, key: &str) -> Option<String> {
    let bytes = std::fs::read(p.path(&format!("cache/jobs/{key}.slurm.json"))).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["job_id"].as_str().map(String::from)
}

fn recorded_args(p: &Project, key: &str) -> Vec<String> {
    let bytes = std::fs::read(p.path(&format!("cache/jobs/{key}.slurm.json"))).expect("job record");
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["sbatch_args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

fn job_state(conf: &Path, id: &str) -> String {
    let out = Command::new("squeue")
        .args(["--noheader", "--states=all", "--format=%T", &format!("--jobs={id}")])
        .env("SLURM_CONF", conf)
        .output()
        .expect("squeue");
    stdout(&out).trim().to_string()
}

/// Waits until stage `stage` runs inside its Slurm job (the test bed's `.started` marker in its
/// temporary output); returns the job id.
fn wait_running(p: &Project, conf: &Path, key: &str, stage: &str) -> String {
    let mut id = None;
    wait_for(&format!("the Slurm job of `{stage}` to run"), 60, || {
        id = id.clone().or_else(|| recorded_job(p, key));
        let started = std::fs::read_dir(p.path("cache/tmp"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(key) && e.path().join("out/.started").exists());
        started && id.as_deref().is_some_and(|id| job_state(conf, id) == "RUNNING")
    });
    id.unwrap()
}

fn finish(child: Child, timeout_s: u64) -> Output {
    let start = Instant::now();
    let mut child = child;
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > Duration::from_secs(timeout_s) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("`pipeline run` did not end within {timeout_s} s:\n{}\n{}", stdout(&out), stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// Lines of the count file per stage: how often each stage ran.
fn executions(p: &Project) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(p.path("count.txt")).unwrap_or_default();
    let mut n = BTreeMap::new();
    for line in text.lines() {
        *n.entry(line.split_whitespace().next().unwrap_or_default().to_string()).or_default() += 1;
    }
    n
}

fn published_text(p: &Project, key: &str) -> String {
    std::fs::read_to_string(p.path(&format!("cache/objects/{}/{key}/out/data.txt", &key[..2]))).unwrap()
}

#[test]
fn runs_through_slurm_with_the_keys_and_outputs_of_a_local_run_and_submits_nothing_twice() {
    let Some(conf) = cluster() else { return };
    let on_slurm = project(0);
    let local = project(0);
    let out = run_slurm(&on_slurm, conf);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(with_status(&statuses(&out), "ran"), ["a", "all", "side", "source"], "{}", stderr(&out));
    let first = local.run(&["run", "exp.toml", "--executor", "local", "--json"]);
    assert!(first.status.success(), "{}", stderr(&first));

    let keys = keys(&on_slurm);
    assert_eq!(keys, self::keys(&local), "Slurm and local runs must key stages alike");
    for (stage, key) in &keys {
        assert_eq!(published_text(&on_slurm, key), published_text(&local, key), "output of `{stage}`");
        assert!(recorded_job(&on_slurm, key).is_some(), "no job record for `{stage}`");
        // Jobs run a copy of the executable, so a rebuild while they are queued changes nothing.
        let script = std::fs::read_to_string(on_slurm.path(&format!("cache/jobs/{key}.slurm.sh"))).unwrap();
        assert!(script.contains("/cache/jobs/bin/pipeline-testbed-"), "{script}");
    }
    on_slurm.published();

    // A second run submits nothing.
    let ids: Vec<_> = keys.values().map(|k| recorded_job(&on_slurm, k)).collect();
    let again = run_slurm(&on_slurm, conf);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(with_status(&statuses(&again), "cached").len(), 4, "{}", stderr(&again));
    assert_eq!(ids, keys.values().map(|k| recorded_job(&on_slurm, k)).collect::<Vec<_>>());
    assert!(executions(&on_slurm).values().all(|&n| n == 1), "{:?}", executions(&on_slurm));
}

#[test]
fn a_scancelled_stage_fails_by_name_and_state_and_the_rerun_resubmits_it_and_its_dependants_only() {
    let Some(conf) = cluster() else { return };
    let p = project(3000);
    let keys = keys(&p);
    let child = slurm_cmd(&p, conf, &["run", "exp.toml", "--executor", "slurm"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = wait_running(&p, conf, &keys["a"], "a");
    let cancel = Command::new("scancel").arg(&id).env("SLURM_CONF", conf).output().unwrap();
    assert!(cancel.status.success(), "{}", stderr(&cancel));
    let out = finish(child, 60);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    let failure = err.lines().find(|l| l.contains("failed    a ")).unwrap_or_else(|| panic!("{err}"));
    assert!(failure.contains(&keys["a"][..12]), "{err}");
    assert!(err.contains(&format!("Slurm job {id} was CANCELLED")), "{err}");
    assert!(err.contains("skipped   all"), "{err}");
    assert!(err.contains("(full log: "), "{err}");

    let before: BTreeMap<_, _> = keys.iter().map(|(s, k)| (s.clone(), recorded_job(&p, k))).collect();
    let rerun = run_slurm(&p, conf);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    let r = statuses(&rerun);
    assert_eq!(with_status(&r, "ran"), ["a", "all"], "{}", stderr(&rerun));
    assert_eq!(with_status(&r, "cached"), ["side", "source"]);
    let resubmitted: Vec<&String> =
        keys.iter().filter(|(s, k)| recorded_job(&p, k) != before[*s]).map(|(s, _)| s).collect();
    assert_eq!(resubmitted, ["a", "all"]);
    assert_eq!(
        executions(&p),
        BTreeMap::from([("a".into(), 2), ("all".into(), 1), ("side".into(), 1), ("source".into(), 1)])
    );
}

#[test]
fn an_interrupted_run_leaves_its_jobs_running_and_the_next_run_attaches_to_them() {
    let Some(conf) = cluster() else { return };
    let p = project(4000);
    let keys = keys(&p);
    let child = slurm_cmd(&p, conf, &["run", "exp.toml", "--executor", "slurm"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = wait_running(&p, conf, &keys["a"], "a");
    let all_id = recorded_job(&p, &keys["all"]).expect("`all` is queued behind `a`");

    // `status` shows the queued and running jobs.
    let status = slurm_cmd(&p, conf, &["status", "exp.toml"]).output().unwrap();
    let text = stdout(&status);
    let line = |stage: &str| text.lines().find(|l| l.starts_with(stage)).unwrap_or_default().to_string();
    assert!(line("a ").contains("running") && line("a ").contains(&format!("Slurm job {id} RUNNING")), "{text}");
    assert!(line("all").contains("queued") && line("all").contains(&format!("Slurm job {all_id} PENDING")), "{text}");

    // SAFETY: SIGINT to the child this test spawned.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let out = finish(child, 30);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("Slurm job {id} (running) keeps going")), "{err}");
    let scancel =
        err.lines().find_map(|l| l.split_once("scancel ")).map(|(_, ids)| ids).unwrap_or_else(|| panic!("{err}"));
    let cancellable: Vec<&str> = scancel.split_whitespace().collect();
    assert!(cancellable.contains(&id.as_str()) && cancellable.contains(&all_id.as_str()), "{err}");
    assert_eq!(job_state(conf, &id), "RUNNING", "Ctrl-C must leave the job running");

    let again = slurm_cmd(&p, conf, &["run", "exp.toml", "--executor", "slurm"]).output().unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    let err = stderr(&again);
    assert!(err.contains("attached  a") && err.contains(&format!("Slurm job {id} of an earlier run")), "{err}");
    assert!(!err.contains("submitted"), "{err}");
    let table = stdout(&again);
    for stage in ["a ", "all "] {
        assert!(table.lines().any(|l| l.starts_with(stage) && l.contains(" ran ")), "{table}");
    }
    assert_eq!(recorded_job(&p, &keys["a"]).unwrap(), id);
    assert_eq!(executions(&p)["a"], 1, "`a` ran twice: {:?}", executions(&p));
}

#[test]
fn gpu_stages_get_a_gres_request_and_failures_show_state_and_log() {
    let Some(conf) = cluster() else { return };
    let p = Project::new(testbed());
    p.write(
        "exp.toml",
        r#"[stages.probe]
kind = "gpu_probe"
gpus = 2

[stages.broken]
kind = "gpu_probe"
gpus = 0
fail = true

[stages.after_broken]
kind = "combine"
needs = ["broken"]

[slurm]
gpu = "gpu"
poll_seconds = 0.2
"#,
    );
    let keys = keys(&p);
    let out = run_slurm(&p, conf);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r = statuses(&out);
    assert_eq!(r["probe"], "ran", "{}", stderr(&out));
    assert!(recorded_args(&p, &keys["probe"]).contains(&"--gres=gpu:2".to_string()));
    assert!(!recorded_args(&p, &keys["broken"]).iter().any(|a| a.starts_with("--gres")));
    // Slurm hands out the fake GPUs of the test cluster.
    assert!(
        published_text(&p, &keys["probe"]).contains("CUDA_VISIBLE_DEVICES=0,1"),
        "{}",
        published_text(&p, &keys["probe"])
    );

    assert_eq!(r["broken"], "failed");
    assert_eq!(r["after_broken"], "skipped");
    let err = stderr(&out);
    assert!(err.contains("FAILED (exit code 1)"), "{err}");
    assert!(err.contains("about to fail on purpose"), "the log tail is shown: {err}");
}

#[test]
fn without_a_cluster_the_slurm_tests_fail_under_ci_and_say_why_otherwise() {
    // Runs one cluster test of this binary in a child process, with a cluster that cannot start.
    let child = |ci: Option<&str>| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args([
            "--exact",
            "runs_through_slurm_with_the_keys_and_outputs_of_a_local_run_and_submits_nothing_twice",
            "--nocapture",
        ])
        .env("PIPELINE_SLURM_UNAVAILABLE", "simulated by the test")
        .env_remove("CI");
        if let Some(ci) = ci {
            c.env("CI", ci);
        }
        c.output().unwrap()
    };
    let out = child(Some("true"));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "under CI=true a missing cluster must fail the test:\n{text}");
    assert!(text.contains("CI=true") && text.contains("simulated by the test"), "{text}");
    let out = child(None);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("skipping the Slurm test: slurm-unavailable: simulated by the test"), "{text}");
}

#[test]
fn slurm_settings_are_checked_with_file_and_line() {
    let p = project(0);
    p.write("exp.toml", &format!("{EXP}partiton = \"gpu\"\n").replace("A_SLEEP_MS", "0"));
    let out = p.run(&["run", "exp.toml", "--executor", "slurm"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let line = EXP.lines().count() + 1;
    assert!(err.contains(&format!("exp.toml:{line}:1: unknown key `partiton` in [slurm]")), "{err}");
    assert!(err.contains("did you mean `partition`?"), "{err}");

    p.write(
        "exp.toml",
        &format!("{EXP}[slurm.time]\ntransfrom = \"10\"\n").replace("A_SLEEP_MS", "0").replace("time = \"5\"\n", ""),
    );
    let out = p.run(&["run", "exp.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("`transfrom` is not a stage kind"), "{}", stderr(&out));
    assert!(stderr(&out).contains("did you mean `transform`?"), "{}", stderr(&out));
}
