//! The results view through the real CLI (the engine's test bed): `results/<experiment>/<stage>`
//! links to the entries of the last run; it changes at the end of a run and only then, per
//! experiment; gc keeps what it points to; `show` finds it; planning works before the data is there.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;

fn experiment(name: &str, factor: u32, sleep_ms: u64, fail_final: bool) -> String {
    format!(
        r#"[experiment]
name = "{name}"

[stages.source]
file = "input.txt"

[stages.transform]
factor = {factor}
sleep_ms = {sleep_ms}

[stages.final]
kind = "combine"
needs = ["transform"]
fail = {fail_final}
"#
    )
}

fn project() -> Project {
    let p = Project::new(testbed());
    p.write("input.txt", "data\n");
    p
}

/// `run --json` keys by stage, and the run's output.
fn run_keys(p: &Project, exp: &str) -> std::collections::BTreeMap<String, String> {
    let out = p.run(&["run", exp, "--json"]);
    assert!(out.status.success(), "run failed:\n{}\n{}", stdout(&out), stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["stage"].as_str().unwrap().into(), r["key"].as_str().unwrap().into()))
        .collect()
}

/// Where a view's link points: the key of the cache entry.
fn linked_key(link: &Path) -> String {
    let target = std::fs::read_link(link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    assert!(target.ends_with("out"), "{}", target.display());
    let key = target.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    assert!(target.is_dir(), "{} points at a removed entry", link.display());
    key
}

fn index(p: &Project, exp: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p.path(&format!("results/{exp}/.index.json"))).unwrap()).unwrap()
}

#[test]
fn a_run_leaves_a_view_of_its_entries_and_prints_where_they_are() {
    let p = project();
    p.write("exp.toml", &experiment("exp", 2, 0, false));
    let keys = run_keys(&p, "exp.toml");
    for (stage, key) in &keys {
        assert_eq!(&linked_key(&p.path(&format!("results/exp/{stage}"))), key, "{stage}");
    }
    assert_eq!(std::fs::read_to_string(p.path("results/exp/source/data.txt")).unwrap(), "data\n");
    let idx = index(&p, "exp");
    assert_eq!(idx["keys"].as_array().unwrap().len(), 3);
    assert_eq!(idx["store"].as_str().unwrap(), p.path("cache").canonicalize().unwrap().to_str().unwrap());

    // The table ends with the view's path; `--json` rows carry each stage's path in it.
    p.write("exp.toml", &experiment("exp", 3, 0, false));
    let out = p.run(&["run", "exp.toml"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("results: results/exp/"), "{}", stdout(&out));
    let out = p.run(&["run", "exp.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = PathBuf::from(v[2]["path"].as_str().unwrap());
    assert_eq!(path, p.path("results").canonicalize().unwrap().join("exp/final"));

    // `show --path` is a directory holding the stage's files; `show` lists them with the key.
    let out = p.run(&["show", "exp.toml", "transform", "--path"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = PathBuf::from(stdout(&out).trim());
    assert!(dir.is_absolute() && dir.join("data.txt").is_file(), "{}", dir.display());
    let out = p.run(&["show", "exp.toml", "transform"]);
    let text = stdout(&out);
    assert!(text.contains("path   results/exp/transform"), "{text}");
    assert!(text.contains(&key_of(&p, "exp.toml", "transform")), "{text}");
    assert!(text.contains("data.txt"), "{text}");

    // Edited but not run: show still shows the last run's output, and says the file changed.
    p.write("exp.toml", &experiment("exp", 4, 0, false));
    let text = stdout(&p.run(&["show", "exp.toml", "transform"]));
    assert!(text.contains("has changed since this output was made"), "{text}");
}

#[test]
fn a_failed_run_keeps_the_previous_entries_and_adds_the_stages_that_finished() {
    let p = project();
    p.write("exp.toml", &experiment("exp", 2, 0, false));
    let first = run_keys(&p, "exp.toml");
    p.write("exp.toml", &experiment("exp", 5, 0, true));
    let out = p.run(&["run", "exp.toml", "--json"]);
    assert!(!out.status.success());
    let now = key_of(&p, "exp.toml", "transform");
    assert_ne!(now, first["transform"]);
    assert_eq!(linked_key(&p.path("results/exp/transform")), now, "the stage that finished is in the view");
    assert_eq!(linked_key(&p.path("results/exp/final")), first["final"], "the failed one keeps its previous entry");
    let text = stdout(&p.run(&["show", "exp.toml", "final"]));
    assert!(text.contains("the latest run") && text.contains("did not finish `final`"), "{text}");
}

#[test]
fn a_killed_run_leaves_the_previous_view_as_it_was() {
    let p = project();
    p.write("exp.toml", &experiment("exp", 2, 0, false));
    run_keys(&p, "exp.toml");
    let before = std::fs::read(p.path("results/exp/.index.json")).unwrap();
    let link_before = std::fs::read_link(p.path("results/exp")).unwrap();

    p.write("exp.toml", &experiment("exp", 3, 5_000, false));
    let key = key_of(&p, "exp.toml", "transform");
    let mut run = p.cmd(&["run", "exp.toml", "-q"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_until_stage_runs(&p, &key);
    // SAFETY: killing our own child process.
    unsafe { libc::kill(run.id() as i32, libc::SIGKILL) };
    run.wait().unwrap();
    assert_eq!(std::fs::read(p.path("results/exp/.index.json")).unwrap(), before);
    assert_eq!(std::fs::read_link(p.path("results/exp")).unwrap(), link_before);
}

#[test]
fn experiments_have_their_own_views_even_when_they_run_at_once() {
    let p = project();
    p.write("a.toml", &experiment("a", 2, 0, false));
    p.write("b.toml", &experiment("b", 3, 0, false));
    let a = run_keys(&p, "a.toml");
    let b = run_keys(&p, "b.toml");
    assert_eq!(linked_key(&p.path("results/a/transform")), a["transform"], "b's run left a's view intact");
    assert_eq!(linked_key(&p.path("results/b/transform")), b["transform"]);

    // Both at once, each changed: each view ends with its own run's entries.
    p.write("a.toml", &experiment("a", 4, 600, false));
    p.write("b.toml", &experiment("b", 5, 600, false));
    let spawn =
        |exp: &str| p.cmd(&["run", exp, "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (ra, rb) = (spawn("a.toml"), spawn("b.toml"));
    for r in [ra, rb] {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for exp in ["a", "b"] {
        for stage in ["source", "transform", "final"] {
            let file = format!("{exp}.toml");
            assert_eq!(
                linked_key(&p.path(&format!("results/{exp}/{stage}"))),
                key_of(&p, &file, stage),
                "{exp} {stage}"
            );
        }
    }
}

#[test]
fn gc_keeps_what_a_view_points_to_unless_told_and_then_drops_the_links_first() {
    let p = project();
    p.write("exp.toml", &experiment("exp", 2, 0, false));
    let old = run_keys(&p, "exp.toml");
    // The file moves on without a run: only the view still wants the old transform and final.
    p.write("exp.toml", &experiment("exp", 9, 0, false));
    let out = p.run(&["gc", "--keep", "exp.toml"]);
    assert!(stdout(&out).contains("removed 0 entries"), "{}", stdout(&out));
    assert!(stdout(&out).contains("kept 2 more entries that results views point to (results/exp)"), "{}", stdout(&out));
    assert_eq!(p.published().len(), 3);
    assert_eq!(linked_key(&p.path("results/exp/final")), old["final"]);

    let out = p.run(&["gc", "--keep", "exp.toml", "--ignore-results"]);
    assert!(stdout(&out).contains("removed 2 entries"), "{}", stdout(&out));
    assert_eq!(p.published().len(), 1);
    assert!(std::fs::symlink_metadata(p.path("results/exp/final")).is_err(), "no link to a removed entry");
    assert_eq!(linked_key(&p.path("results/exp/source")), old["source"]);
    assert_eq!(index(&p, "exp")["keys"].as_array().unwrap().len(), 1);

    // A view removed by hand protects nothing any more.
    p.write("exp.toml", &experiment("exp", 2, 0, false));
    run_keys(&p, "exp.toml");
    std::fs::remove_dir_all(p.path("results")).unwrap();
    p.write("exp.toml", &experiment("exp", 9, 0, false));
    let out = p.run(&["gc", "--keep", "exp.toml"]);
    assert!(stdout(&out).contains("removed 2 entries"), "{}", stdout(&out));
}

#[test]
fn results_dir_and_its_environment_variable_move_the_view() {
    let p = project();
    p.write("exp.toml", &experiment("exp", 2, 0, false));
    let out = p.run(&["run", "exp.toml", "--results-dir", "elsewhere"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(p.path("elsewhere/exp/final/data.txt").is_file());
    assert!(!p.path("results").exists());
    let out = p.cmd(&["show", "exp.toml", "final", "--path"]).env("PIPELINE_RESULTS", "elsewhere").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).trim().ends_with("elsewhere/exp/final"), "{}", stdout(&out));
}

#[test]
fn bad_input_says_what_to_do() {
    let p = project();
    p.write("exp.toml", &experiment("exp", 2, 0, false));
    let expect = |args: &[&str], text: &str| {
        let out = p.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}{}", stdout(&out), stderr(&out));
        assert!(stderr(&out).contains(text), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().filter(|l| l.starts_with("error")).count(), 1, "{}", stderr(&out));
    };
    expect(&["show", "exp.toml", "final"], "not run yet: run `pipeline run exp.toml`");
    expect(&["show", "exp.toml", "fnal"], "did you mean `final`?");
    expect(&["show", "exp.toml", "final", "--variant", "defualt"], "did you mean `default`?");
    p.write("file", "");
    expect(&["run", "exp.toml", "--results-dir", "file"], "results directory file: is a file, not a directory");
    expect(&["show", "exp.toml", "final", "--results-dir", "file"], "is a file, not a directory");
    assert!(!p.path("cache/objects").read_dir().unwrap().any(|_| true), "the run refused before running anything");
    // A view that never had this stage (the stage was added since).
    run_keys(&p, "exp.toml");
    p.write(
        "exp.toml",
        &format!("{}\n[stages.extra]\nkind = \"transform\"\nneeds = [\"final\"]\n", experiment("exp", 2, 0, false)),
    );
    expect(&["show", "exp.toml", "extra"], "not run yet: `extra` has no output in the results view");
}

#[test]
fn an_experiment_is_planned_before_its_data_is_there() {
    let p = Project::new(testbed());
    p.write("exp.toml", &experiment("exp", 2, 0, false));
    let out = p.run(&["status", "exp.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("input missing: input.txt"), "{text}");
    assert_eq!(text.matches("waiting for input").count(), 2, "{text}");
    let out = p.run(&["status", "exp.toml", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    let out = p.run(&["dag", "exp.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("final (combine) ← transform"), "{}", stdout(&out));
    let out = p.run(&["dag", "exp.toml", "--format", "dot"]);
    assert!(stdout(&out).contains("\"transform\" -> \"final\""), "{}", stdout(&out));
    // Running still refuses, naming the file.
    let out = p.run(&["run", "exp.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("input file") && stderr(&out).contains("input.txt does not exist"),
        "{}",
        stderr(&out)
    );
    // A real error is still one.
    p.write("bad.toml", "[experiment]\nname = \"x\"\n[stages.source]\nfiel = \"input.txt\"\n");
    assert_eq!(p.run(&["status", "bad.toml"]).status.code(), Some(2));
    // With the data there, --check passes once everything is cached.
    p.write("input.txt", "data\n");
    run_keys(&p, "exp.toml");
    assert!(p.run(&["status", "exp.toml", "--check"]).status.success());
}

#[test]
fn the_default_results_directory_is_ignored_by_git() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = std::process::Command::new("git")
        .args(["check-ignore", "-q", "results/quickstart/report/report.html"])
        .current_dir(repo)
        .status()
        .expect("git");
    assert!(out.success(), "results/ is not in .gitignore");
}
