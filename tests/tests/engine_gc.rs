//! `pipeline gc` beside running experiments: it never removes what a running `pipeline run` (of
//! any experiment, in another process) uses or produces, it reclaims the resume state of
//! attempts nobody will continue, and it reports the cache's real size.

mod common;

use std::process::Stdio;

use common::*;

/// `source → slow → after`: `slow` reads its upstream's output only after sleeping, as a
/// training reads its dataset during every epoch.
fn experiment(sleep_ms: u64, factor: u32, resume_bytes: u64) -> String {
    format!(
        r#"[experiment]
name = "busy"

[stages.source]
file = "input.txt"

[stages.slow]
kind = "transform"
factor = {factor}
sleep_ms = {sleep_ms}
resume_bytes = {resume_bytes}

[stages.after]
kind = "transform"
needs = ["slow"]
"#
    )
}

const OTHER: &str = r#"[experiment]
name = "other"

[stages.source]
file = "other.txt"
"#;

fn project() -> Project {
    let p = Project::new(testbed());
    p.write("input.txt", "data\n");
    p.write("other.txt", "other data\n");
    p.write("other.toml", OTHER);
    p
}

fn gc(p: &Project, args: &[&str]) -> String {
    let mut all = vec!["gc"];
    all.extend_from_slice(args);
    let out = p.run(&all);
    assert!(out.status.success(), "gc {args:?} failed:\n{}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}

#[test]
fn gc_during_a_run_in_another_process_removes_nothing_the_run_uses_and_the_run_succeeds() {
    let p = project();
    assert!(p.run_json("other.toml").values().all(|s| s == "ran"));
    // An entry nobody keeps or uses: gc must still remove it.
    p.write("busy.toml", &experiment(0, 7, 0));
    p.run_json("busy.toml");
    let before = p.published().len();
    assert_eq!(before, 4);

    p.write("busy.toml", &experiment(3_000, 1, 0));
    let slow = key_of(&p, "busy.toml", "slow");
    let run = p.cmd(&["run", "busy.toml", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_until_stage_runs(&p, &slow);

    // Keeping another experiment, keeping nothing named, keeping the running one: the running
    // experiment's `source` (which `slow` is about to read) survives all three.
    let out = gc(&p, &["--keep", "other.toml"]);
    assert!(out.contains("removed 2 entries"), "the old `slow` and `after` go:\n{out}");
    assert!(out.contains("in use by running pipelines: pipeline run busy.toml (pid "), "{out}");
    assert!(out.contains("on disk"), "{out}");
    gc(&p, &[]);
    gc(&p, &["--keep", "busy.toml"]);

    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "the run died under gc:\n{}\n{}", stdout(&out), stderr(&out));
    let r = statuses(&out);
    assert_eq!(r["source"], "cached", "{r:?}");
    assert_eq!(with_status(&r, "ran"), ["after", "slow"], "{r:?}");
    // Its three entries; the last gc kept only busy.toml, so other.toml's entry went.
    assert_eq!(p.published().len(), 3);
    assert!(p.run_json("busy.toml").values().all(|s| s == "cached"));
}

#[test]
fn gc_reclaims_the_resume_state_of_abandoned_attempts_but_keeps_the_latest() {
    let p = project();
    let killed_run = |factor: u32| {
        p.write("busy.toml", &experiment(2_000, factor, 300_000));
        let key = key_of(&p, "busy.toml", "slow");
        let mut run = p.cmd(&["run", "busy.toml", "-q"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        wait_until_stage_runs(&p, &key);
        // SAFETY: killing our own child process.
        unsafe { libc::kill(run.id() as i32, libc::SIGKILL) };
        run.wait().unwrap();
        // The worker dies with its run (PR_SET_PDEATHSIG) and the kernel drops its lock.
        wait_for("the killed run's worker to exit", 30, || lock_is_free(&p, &key));
    };
    let work = |p: &Project| std::fs::read_dir(p.path("cache/work")).unwrap().count();

    killed_run(1);
    assert_eq!(work(&p), 1);
    // Without --keep, the latest attempt of every stage stays: the next run resumes from it.
    let out = gc(&p, &[]);
    assert_eq!(work(&p), 1, "{out}");

    // Another attempt with other params: the first one's resume state is abandoned.
    killed_run(2);
    assert_eq!(work(&p), 2);
    let out = gc(&p, &["--keep", "busy.toml", "--dry-run"]);
    assert!(out.contains("would remove 0 entries (0 B) and 2 unfinished or stale items"), "{out}");
    assert!(out.contains("resume state and logs of an unfinished stage"), "{out}");
    assert_eq!(work(&p), 2, "a dry run removes nothing");
    let out = gc(&p, &["--keep", "busy.toml"]);
    assert_eq!(work(&p), 1, "{out}");
    // The size the report gives for the reclaimed attempt is what it took on disk.
    let line = out.lines().find(|l| l.contains("resume state")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("KiB"), "{line}");
    let cache = out.lines().find(|l| l.starts_with("cache ")).unwrap_or_else(|| panic!("{out}"));
    assert!(cache.contains("work ") && cache.contains(", was "), "{cache}");

    // The attempt kept is the one the experiment continues.
    p.write("busy.toml", &experiment(2_000, 2, 300_000));
    let r = p.run_json("busy.toml");
    assert_eq!(r["slow"], "ran");
    assert_eq!(work(&p), 0, "a published stage's resume state goes with its publication");
}

/// Whether nobody holds the key's lock (the test takes and drops it).
fn lock_is_free(p: &Project, key: &str) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::File::open(p.path(&format!("cache/locks/{key}.lock"))) else { return true };
    // SAFETY: flock(2) on a file this function owns; the lock goes with the file.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}
