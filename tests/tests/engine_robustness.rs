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
