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
