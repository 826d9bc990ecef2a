//! The engine under stress: killed runs, concurrent runs, Ctrl-C, failing stages, bad input.

mod common;

use std::process::Stdio;

use common::*;

fn slow_experiment(p: &Project, sleep_ms: u64) {
    p.write("input.txt", "data\n");
    p.write(
        "exp.toml",
        &format!(
            r#"[stages.source]
file = "input.txt"
count_file = "counts.txt"

[stages.slow]
kind = "transform"
sleep_ms = {sleep_ms}
count_file = "counts.txt"

[stages.after]
kind = "transform"
needs = ["slow"]
count_file = "counts.txt"
"#
        ),
    );
}

fn count_runs(p: &Project, stage: &str) -> usize {
    std::fs::read_to_string(p.path("counts.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(stage))
        .count()
}

/// Waits until the slow stage's worker is inside the stage (its marker file exists in tmp/).
fn wait_until_running(p: &Project) {
    wait_for("the slow stage to start", 60, || find_file(&p.path("cache/tmp"), ".started").is_some());
}

#[test]
fn sigkill_mid_stage_leaves_no_partial_entry_and_the_next_run_completes() {
    let p = Project::new(testbed());
    slow_experiment(&p, 2_000);
    let mut child = p.cmd(&["run", "exp.toml", "-q"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_until_running(&p);
    let published_before = p.published().len();
    // SAFETY: killing our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    // The worker dies with its parent (PR_SET_PDEATHSIG); give the kernel a moment.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(p.published().len(), published_before, "nothing may be published by a killed run");

    // The next run completes; the stale temporary directory is removed.
    let r = p.run_json("exp.toml");
    assert_eq!(with_status(&r, "ran"), ["after", "slow"], "{r:?}");
    assert_eq!(p.published().len(), 3);
    let leftovers: Vec<_> = std::fs::read_dir(p.path("cache/tmp")).unwrap().flatten().collect();
    assert!(leftovers.is_empty(), "stale temporary entries left: {leftovers:?}");
}

#[test]
fn two_concurrent_runs_compute_each_stage_once_and_both_succeed() {
    let p = Project::new(testbed());
    slow_experiment(&p, 1500);
    let a = p.cmd(&["run", "exp.toml", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let b = p.cmd(&["run", "exp.toml", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    for stage in ["source", "slow", "after"] {
        assert_eq!(count_runs(&p, stage), 1, "stage {stage} ran more than once");
    }
    // Between them, each stage ran once; the other run saw it cached.
    let (ra, rb) = (statuses(&a), statuses(&b));
    for stage in ["source", "slow", "after"] {
        let ran = [ra[stage].as_str(), rb[stage].as_str()].iter().filter(|s| **s == "ran").count();
        assert_eq!(ran, 1, "{stage}: {ra:?} {rb:?}");
    }
}

#[test]
fn ctrl_c_stops_cleanly_with_exit_130_and_publishes_nothing_half_done() {
    let p = Project::new(testbed());
    slow_experiment(&p, 20_000);
    let child = p.cmd(&["run", "exp.toml"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_until_running(&p);
    let published_before = p.published().len();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(p.published().len(), published_before);
    let leftovers: Vec<_> = std::fs::read_dir(p.path("cache/tmp")).unwrap().flatten().collect();
    assert!(leftovers.is_empty(), "temporary outputs must be removed: {leftovers:?}");
    assert!(stdout(&out).contains("cancelled"), "{}", stdout(&out));
}

#[test]
fn a_failing_stage_fails_the_run_skips_dependants_and_shows_its_log() {
    let p = Project::new(testbed());
    p.write("input.txt", "x\n");
    p.write(
        "exp.toml",
        r#"[stages.source]
file = "input.txt"
[stages.bad]
kind = "transform"
fail = true
[stages.after]
kind = "transform"
needs = ["bad"]
[stages.fine]
kind = "transform"
"#,
    );
    let out = p.run(&["run", "exp.toml", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let r = statuses(&out);
    assert_eq!(r["bad"], "failed");
    assert_eq!(r["after"], "skipped");
    assert_eq!(r["fine"], "ran", "independent stages still run without --fail-fast");
    let err = stderr(&out);
    assert!(err.contains("failed on purpose") && err.contains("about to fail on purpose"), "{err}");
    assert_eq!(p.published().len(), 2);
}

fn bad_input(p: &Project, exp: &str) -> String {
    p.write("input.txt", "x\n");
    p.write("exp.toml", exp);
    let out = p.run(&["run", "exp.toml"]);
    assert_eq!(out.status.code(), Some(2), "bad input must exit with 2:\n{}", stderr(&out));
    assert!(p.published().is_empty(), "nothing may be published");
    let err = stderr(&out);
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "one clear message:\n{err}");
    err
}

#[test]
fn malformed_toml_names_file_line_and_column() {
    let p = Project::new(testbed());
    let err = bad_input(&p, "[stages.source]\nfile = \"input.txt\n");
    assert!(err.contains("exp.toml:2:"), "{err}");
    assert!(err.contains("invalid TOML"), "{err}");
}

#[test]
fn unknown_key_is_located_with_a_suggestion() {
    let p = Project::new(testbed());
    let err = bad_input(&p, "[stages.source]\nfile = \"input.txt\"\n[stages.t]\nkind = \"transform\"\nfactr = 2\n");
    assert!(err.contains("exp.toml:5:1"), "{err}");
    assert!(err.contains("unknown key `factr`") && err.contains("did you mean `factor`?"), "{err}");
}

#[test]
fn cycles_are_named() {
    let p = Project::new(testbed());
    let err = bad_input(
        &p,
        "[stages.source]\nfile = \"input.txt\"\n[stages.a]\nkind = \"transform\"\nneeds = [\"b\"]\n[stages.b]\nkind = \"transform\"\nneeds = [\"a\"]\n",
    );
    assert!(err.contains("cycle") && err.contains("a → b → a"), "{err}");
}

#[test]
fn missing_input_file_is_named() {
    let p = Project::new(testbed());
    let err = bad_input(&p, "[stages.source]\nfile = \"nope.txt\"\n");
    assert!(err.contains("nope.txt") && err.contains("does not exist") && err.contains("exp.toml:"), "{err}");
}

#[test]
fn unknown_kind_and_dangling_needs_are_reported() {
    let p = Project::new(testbed());
    let err = bad_input(&p, "[stages.source]\nfile = \"input.txt\"\n[stages.t]\nkind = \"transfrom\"\n");
    assert!(err.contains("unknown stage kind `transfrom`") && err.contains("did you mean `transform`?"), "{err}");
    let err =
        bad_input(&p, "[stages.source]\nfile = \"input.txt\"\n[stages.t]\nkind = \"transform\"\nneeds = [\"sorce\"]\n");
    assert!(err.contains("needs `sorce`") && err.contains("did you mean `source`?"), "{err}");
}

#[test]
fn unknown_keys_in_run_are_errors_with_a_suggestion_not_a_local_run() {
    let p = Project::new(testbed());
    let err = bad_input(&p, "[stages.source]\nfile = \"input.txt\"\n\n[run]\nexecuter = \"slurm\"\n");
    assert!(err.contains("exp.toml:5:1: unknown key `executer` in [run]"), "{err}");
    assert!(err.contains("did you mean `executor`?"), "{err}");
    let err = bad_input(&p, "[stages.source]\nfile = \"input.txt\"\n\n[run]\nexecutor = \"slrum\"\n");
    assert!(err.contains("exp.toml:5:") && err.contains("did you mean `slurm`?"), "{err}");
    let err = bad_input(&p, "[stages.source]\nfile = \"input.txt\"\n\n[slrum]\npartition = \"gpu\"\n");
    assert!(err.contains("exp.toml:4:") && err.contains("unknown table `slrum`"), "{err}");
    // `status` checks them too.
    let out = p.run(&["status", "exp.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_truncated_or_edited_last_run_record_does_not_break_status_or_explain() {
    let p = Project::new(testbed());
    p.write("input.txt", "x\n");
    let exp = "[stages.source]\nfile = \"input.txt\"\n[stages.a]\nkind = \"transform\"\nfactor = 2\n\
               [stages.b]\nkind = \"transform\"\nneeds = [\"a\"]\n";
    p.write("exp.toml", exp);
    p.run_json("exp.toml");
    p.write("exp.toml", &exp.replace("factor = 2", "factor = 3"));
    let record = p.path("cache/runs/exp/default/b.json");
    let text = std::fs::read_to_string(&record).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let upstream_key = v["inputs"]["upstream"][0]["key"].as_str().unwrap().to_string();
    let own_key = v["key"].as_str().unwrap().to_string();
    for broken in [
        // Valid JSON with keys cut short (what an editor or a bad merge leaves).
        text.replace(&upstream_key, &upstream_key[..7]),
        text.replace(&own_key, "é"),
        // Cut off mid-file (a full disk, a copy interrupted).
        text[..text.len() / 2].to_string(),
    ] {
        std::fs::write(&record, &broken).unwrap();
        let out = p.run(&["explain", "exp.toml", "b"]);
        assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains("its record cannot be read"), "{}", stdout(&out));
        assert!(stdout(&out).contains("b.json"), "the record is named: {}", stdout(&out));
        let out = p.run(&["status", "exp.toml"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stdout(&out).contains("record is unreadable"), "{}", stdout(&out));
    }
    // The next run rewrites it.
    p.run_json("exp.toml");
    let out = p.run(&["explain", "exp.toml", "b"]);
    assert!(stdout(&out).contains("no differences: same key"), "{}", stdout(&out));
}

#[test]
fn a_rerun_keeps_the_killed_attempts_log_beside_its_own() {
    let p = Project::new(testbed());
    slow_experiment(&p, 2_000);
    let key = key_of(&p, "exp.toml", "slow");
    let mut child = p.cmd(&["run", "exp.toml", "-q"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_until_stage_runs(&p, &key);
    // SAFETY: killing our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = p.run_json("exp.toml");
    assert_eq!(r["slow"], "ran");
    let previous = std::fs::read_to_string(p.path(&format!("cache/logs/{key}.previous.log")))
        .expect("the killed attempt's log is kept");
    assert!(previous.contains("execution 1 of `slow`"), "{previous}");
    assert!(!previous.contains("execution 2"), "{previous}");
    let published = std::fs::read_to_string(p.path(&format!("cache/objects/{}/{key}/log.txt", &key[..2]))).unwrap();
    assert!(published.contains("execution 2 of `slow`") && !published.contains("execution 1"), "{published}");
}
