//! Golden freshness tests in the spirit of cargo's: edit an experiment, run the real binary,
//! and check that exactly the right stages run again.

mod common;

use common::*;

const EXP: &str = r#"[experiment]
name = "fresh"

[stages.source]
file = "input.txt"

[stages.a]
kind = "transform"
needs = ["source"]
factor = 2

[stages.b]
kind = "transform"
needs = ["a"]
weight = 1e-4

[stages.side]
kind = "transform"
needs = ["source"]

[stages.all]
kind = "combine"
needs = ["b", "side"]
"#;

fn project() -> Project {
    let p = Project::new(testbed());
    p.write("input.txt", "hello\n");
    p.write("exp.toml", EXP);
    let first = p.run_json("exp.toml");
    assert_eq!(with_status(&first, "ran").len(), 5, "{first:?}");
    p
}

#[test]
fn a_second_run_is_fully_cached() {
    let p = project();
    let again = p.run_json("exp.toml");
    assert_eq!(with_status(&again, "cached").len(), 5, "{again:?}");
}

#[test]
fn changing_a_param_reruns_that_stage_and_its_descendants_only() {
    let p = project();
    p.write("exp.toml", &EXP.replace("factor = 2", "factor = 3"));
    let r = p.run_json("exp.toml");
    assert_eq!(with_status(&r, "ran"), ["a", "all", "b"]);
    assert_eq!(with_status(&r, "cached"), ["side", "source"]);
}

#[test]
fn comments_reordering_whitespace_and_number_spelling_rerun_nothing() {
    let p = project();
    // Tables and keys reordered, comments and blank lines added, 1e-4 spelt 0.0001, a default made explicit.
    let edited = r#"# The same experiment, written differently.
[experiment]
name = "fresh"   # same name

[stages.all]
needs = ["b", "side"]
kind = "combine"

[stages.b]
weight = 0.0001
needs = ["a"]
kind = "transform"

[stages.side]
kind = "transform"
needs = ["source"]
factor = 1        # the default, now explicit

[stages.a]
factor = 2
kind = "transform"
needs = ["source"]

[stages.source]
file = "input.txt"
"#;
    p.write("exp.toml", edited);
    let r = p.run_json("exp.toml");
    assert_eq!(with_status(&r, "cached").len(), 5, "{r:?}");
}

#[test]
fn bumping_an_implementation_version_reruns_its_stages_and_descendants() {
    let p = project();
    let status = p.cmd(&["status", "exp.toml"]).env("TESTBED_TRANSFORM_V2", "1").output().unwrap();
    assert!(stdout(&status).contains("implementation version changed 1 → 2"), "{}", stdout(&status));
    let out = p.cmd(&["run", "exp.toml", "--json"]).env("TESTBED_TRANSFORM_V2", "1").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r = statuses(&out);
    assert_eq!(with_status(&r, "ran"), ["a", "all", "b", "side"]);
    assert_eq!(with_status(&r, "cached"), ["source"]);
}

#[test]
fn changing_input_content_reruns_dependants_but_touching_it_does_not() {
    let p = project();
    // Touch: new mtime, same content.
    let f = std::fs::File::options().write(true).open(p.path("input.txt")).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3)).unwrap();
    drop(f);
    let r = p.run_json("exp.toml");
    assert_eq!(with_status(&r, "cached").len(), 5, "touch must not rerun anything: {r:?}");

    p.write("input.txt", "changed\n");
    let r = p.run_json("exp.toml");
    assert_eq!(with_status(&r, "ran").len(), 5, "{r:?}");
}

#[test]
fn status_and_explain_say_why() {
    let p = project();
    p.write("exp.toml", &EXP.replace("factor = 2", "factor = 3"));
    let s = p.run(&["status", "exp.toml"]);
    let text = stdout(&s);
    assert!(text.contains("param `factor` changed 2 → 3"), "{text}");
    assert!(text.contains("upstream `a` changed"), "{text}");
    let line = text.lines().find(|l| l.starts_with("source")).unwrap();
    assert!(line.contains("cached"), "{text}");

    let e = p.run(&["explain", "exp.toml", "a"]);
    let text = stdout(&e);
    assert!(text.contains("param `factor` changed 2 → 3"), "{text}");
    assert!(text.contains("not in the cache"), "{text}");

    // Nothing ran: status is read-only.
    let again = p.run(&["status", "exp.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    let a = v.as_array().unwrap().iter().find(|r| r["stage"] == "a").unwrap();
    assert_eq!(a["status"], "run");
}

#[test]
fn force_reruns_the_named_stage_only() {
    let p = project();
    let out = p.run(&["run", "exp.toml", "--json", "--force", "side"]);
    let r = statuses(&out);
    assert_eq!(with_status(&r, "ran"), ["side"]);
}

#[test]
fn gc_keeps_what_experiments_reach() {
    let p = project();
    p.write("exp.toml", &EXP.replace("factor = 2", "factor = 3"));
    p.run_json("exp.toml");
    assert_eq!(p.published().len(), 8);
    let dry = p.run(&["gc", "--keep", "exp.toml", "--dry-run"]);
    assert!(stdout(&dry).contains("would remove 3 entries"), "{}", stdout(&dry));
    assert_eq!(p.published().len(), 8);
    let gc = p.run(&["gc", "--keep", "exp.toml"]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    assert_eq!(p.published().len(), 5);
    let r = p.run_json("exp.toml");
    assert_eq!(with_status(&r, "cached").len(), 5);
}

#[test]
fn sweeps_share_upstream_stages() {
    let p = Project::new(testbed());
    p.write("input.txt", "x\n");
    p.write(
        "exp.toml",
        r#"[stages.source]
file = "input.txt"
[stages.t]
kind = "transform"
[stages.u]
kind = "transform"
needs = ["t"]
[sweep]
"stages.u.factor" = [1, 2, 3]
"#,
    );
    let out = p.run(&["run", "exp.toml", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = statuses(&out);
    assert_eq!(r.len(), 9);
    // source and t are identical in the three variants: computed once, reported as cached twice.
    assert_eq!(r.iter().filter(|(k, v)| k.starts_with("t@") && *v == "ran").count(), 1);
    assert_eq!(r.iter().filter(|(k, v)| k.starts_with("u@") && *v == "ran").count(), 3);
    assert!(r.contains_key("u@factor=2"), "{r:?}");
    assert_eq!(p.published().len(), 5);
}

#[test]
fn one_variant_of_a_sweep_runs_alone_on_a_fresh_cache_and_then_shares_with_the_rest() {
    // The stages shared by every variant are jobs that stand for their first variant; running
    // only a later one must still run them (it used to panic looking up the first variant).
    let p = Project::new(testbed());
    p.write("input.txt", "x\n");
    p.write(
        "exp.toml",
        r#"[stages.source]
file = "input.txt"
[stages.t]
kind = "transform"
[stages.u]
kind = "transform"
needs = ["t"]
[sweep]
"stages.u.factor" = [1, 2, 3]
"#,
    );
    let out = p.run(&["run", "exp.toml", "--json", "--variant", "factor=3"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let r = statuses(&out);
    assert_eq!(r.keys().collect::<Vec<_>>(), ["source@factor=3", "t@factor=3", "u@factor=3"], "{r:?}");
    assert!(r.values().all(|s| s == "ran"), "{r:?}");
    // The other variants then reuse what it made.
    let all = p.run_json("exp.toml");
    assert_eq!(all.iter().filter(|(_, s)| *s == "ran").count(), 2, "only u for factor=1 and 2: {all:?}");
}

#[test]
fn relative_paths_resolve_against_the_file_that_wrote_them() {
    let p = Project::new(testbed());
    // The base file and its input live in a sub-directory; the experiment extends it from above.
    p.write("shared/input.txt", "from the base's directory\n");
    p.write("input.txt", "from the experiment's directory\n");
    p.write("shared/base.toml", "[stages.source]\nfile = \"input.txt\"\n[stages.t]\nkind = \"transform\"\n");
    p.write("exp.toml", "[experiment]\nname = \"child\"\nextends = \"shared/base.toml\"\n");
    let r = p.run_json("exp.toml");
    assert_eq!(r["source"], "ran", "{r:?}");
    let copied: Vec<String> =
        p.published().iter().filter_map(|e| std::fs::read_to_string(e.join("out/data.txt")).ok()).collect();
    assert!(copied.iter().any(|t| t.contains("from the base's directory")), "{copied:?}");
    assert!(!copied.iter().any(|t| t.contains("from the experiment's directory")), "{copied:?}");

    // Set in the experiment itself, the same relative path is the experiment's file.
    p.write(
        "exp.toml",
        "[experiment]\nname = \"child\"\nextends = \"shared/base.toml\"\n[stages.source]\nfile = \"input.txt\"\n",
    );
    let r = p.run_json("exp.toml");
    assert_eq!(r["source"], "ran", "a different file is a different input: {r:?}");
}

#[test]
fn renaming_a_stage_reruns_only_the_stages_that_show_its_name_and_they_show_the_new_one() {
    let p = project();
    let all_text = |p: &Project| {
        p.published()
            .iter()
            .filter_map(|e| std::fs::read_to_string(e.join("out/data.txt")).ok())
            .filter(|t| t.starts_with("all ["))
            .collect::<Vec<_>>()
    };
    // `combine` shows its upstreams' names (as a report does); `transform` shows none.
    p.write("exp.toml", &EXP.replace("[stages.side]", "[stages.extra]").replace("\"side\"]", "\"extra\"]"));
    let status = p.run(&["status", "exp.toml"]);
    assert!(stdout(&status).contains("upstream `extra` changed"), "{}", stdout(&status));
    let r = p.run_json("exp.toml");
    assert_eq!(with_status(&r, "ran"), ["all"], "{r:?}");
    assert_eq!(r["extra"], "cached", "a renamed stage that shows no names keeps its key: {r:?}");
    let texts = all_text(&p);
    assert_eq!(texts.len(), 2);
    assert!(texts.iter().any(|t| t.contains("== extra ==")), "{texts:?}");

    // Its own name and the experiment's reach its output too.
    p.write("exp.toml", &EXP.replace("[stages.all]", "[stages.everything]"));
    let r = p.run_json("exp.toml");
    assert_eq!(with_status(&r, "ran"), ["everything"], "{r:?}");
    p.write("exp.toml", &EXP.replace("name = \"fresh\"", "name = \"renamed\""));
    let r = p.run_json("exp.toml");
    assert_eq!(with_status(&r, "ran"), ["all"], "{r:?}");
}

/// Replicates and a fan-in across them (an ensemble of the replicates): the stage in every
/// replicate is one input list of one stage.
const REPLICATED: &str = r#"[experiment]
name = "replicated"

[stages.source]
file = "input.txt"

[stages.fit]
kind = "transform"
needs = ["source"]
seed = 10

[stages.ensemble]
kind = "gather"
needs = ["fit@replicate"]

[sweep]
replicates = 2
"#;

#[test]
fn adding_a_replicate_runs_only_the_new_member_and_the_stages_that_fan_it_in() {
    let p = Project::new(testbed());
    p.write("input.txt", "hello\n");
    p.write("exp.toml", REPLICATED);
    let first = p.run_json("exp.toml");
    // source has no seed: both replicates share it; each has its own fit.
    assert_eq!(first["source@replicate=0"], "ran");
    assert_eq!(first["source@replicate=1"], "cached", "{first:?}");
    assert_eq!(first["ensemble@replicate=0"], "ran");
    assert_eq!(first["ensemble@replicate=1"], "cached", "one ensemble for both replicates: {first:?}");
    assert_eq!((first["fit@replicate=0"].as_str(), first["fit@replicate=1"].as_str()), ("ran", "ran"));

    p.write("exp.toml", &REPLICATED.replace("replicates = 2", "replicates = 3"));
    let r = p.run_json("exp.toml");
    let ran = with_status(&r, "ran");
    assert_eq!(ran, ["ensemble@replicate=0", "fit@replicate=2"], "{r:?}");
    for v in ["replicate=0", "replicate=1"] {
        assert_eq!(r[&format!("fit@{v}")], "cached", "{r:?}");
    }
    let again = p.run_json("exp.toml");
    assert!(again.values().all(|s| s == "cached"), "{again:?}");
}

#[test]
fn the_fan_in_holds_every_member_in_axis_order() {
    let p = Project::new(testbed());
    p.write("input.txt", "hello\n");
    p.write("exp.toml", REPLICATED);
    p.run_json("exp.toml");
    let status = p.run(&["status", "exp.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let key =
        v.as_array().unwrap().iter().find(|r| r["stage"] == "ensemble").unwrap()["key"].as_str().unwrap().to_string();
    let text = std::fs::read_to_string(p.path(&format!("cache/objects/{}/{key}/out/data.txt", &key[..2]))).unwrap();
    let seeds: Vec<&str> = text.lines().filter(|l| l.starts_with("transform")).collect();
    assert_eq!(seeds, ["transform x1 w0.0001 s10", "transform x1 w0.0001 s11"], "{text}");
}

#[test]
fn bad_replicates_and_fan_ins_name_file_line_and_key() {
    let p = Project::new(testbed());
    p.write("input.txt", "hello\n");
    for (text, line, needle) in [
        (REPLICATED.replace("replicates = 2", "replicates = 0"), 17, "at least 1 replicate"),
        (REPLICATED.replace("fit@replicate", "fit@fold"), 14, "`fold` is not a swept axis"),
        (REPLICATED.replace("needs = [\"fit@replicate\"]", "needs = []"), 14, "needs at least 1 upstream stage"),
    ] {
        p.write("exp.toml", &text);
        let out = p.run(&["run", "exp.toml"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("exp.toml:{line}:")) && err.contains(needle), "{err}");
    }
}
