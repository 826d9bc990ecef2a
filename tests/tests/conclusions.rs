//! Replicates, cross-validation folds and ensembles through the real `pipeline`, cheaply: the
//! non-learned blob baseline stands in for a trained model (it writes detections like nms does,
//! in seconds). An ensemble of one member equals that member; members tested on different images
//! are refused; every bad input names the file, line and key.

mod common;

use std::path::Path;

use common::*;

/// A tiny synthetic set, a split, the baseline detector and its score.
const BASE: &str = r#"[experiment]
name = "conclusions"

[stages.dataset]
synthetic = { images_per_scanner = 4, scale = 0.08, density = 60, seed = 5 }

[stages.split]
preset = "stratified"
test_fraction = 0.5
val_fraction = 0.5

[stages.baseline]
kind = "blob_baseline"
needs = ["split"]

[stages.score]
needs = ["baseline"]
"#;

fn out_dir(p: &Project, exp: &str, stage: &str) -> std::path::PathBuf {
    let out = p.run(&["status", exp, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = v.as_array().unwrap().iter().find(|r| r["stage"] == stage).unwrap()["key"].as_str().unwrap().to_string();
    p.path(&format!("cache/objects/{}/{key}/out", &key[..2]))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn an_ensemble_of_one_member_scores_exactly_as_that_member() {
    let p = Project::new(pipeline_bin());
    p.write(
        "exp.toml",
        &format!(
            "{BASE}\n[stages.ensemble]\nneeds = [\"baseline\"]\n\n[stages.score_ensemble]\nkind = \"score\"\nneeds = [\"ensemble\"]\n"
        ),
    );
    let r = p.run_json("exp.toml");
    assert_eq!(r["ensemble"], "ran", "{r:?}");
    let member = json(&out_dir(&p, "exp.toml", "score").join("scores.json"));
    let ensemble = json(&out_dir(&p, "exp.toml", "score_ensemble").join("scores.json"));
    // The same threshold, counts and intervals, and per image the same outcomes and detections.
    for k in ["threshold", "val_f1", "groups"] {
        assert_eq!(member[k], ensemble[k], "{k}");
    }
    let images = |s: &serde_json::Value| -> Vec<(u64, u64, u64, u64, Vec<String>)> {
        let mut v: Vec<(u64, u64, u64, u64, Vec<String>)> = s["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let mut dets: Vec<String> = i["detections"].as_array().unwrap().iter().map(|d| d.to_string()).collect();
                dets.sort();
                let n = |k: &str| i[k].as_u64().unwrap();
                (n("id"), n("tp"), n("fp"), n("fn"), dets)
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(images(&member), images(&ensemble));
    assert!(member["groups"].as_array().unwrap().iter().any(|g| g["intervals"].is_object()), "{member}");
}

#[test]
fn members_tested_on_different_images_are_refused_naming_the_stage() {
    let p = Project::new(pipeline_bin());
    // Two test fractions: the baselines of the two variants are tested on different images.
    p.write(
        "exp.toml",
        &format!(
            "{BASE}\n[stages.ensemble]\nneeds = [\"baseline@test_fraction\"]\n\n[sweep]\n\"stages.split.test_fraction\" = [0.25, 0.5]\n"
        ),
    );
    let out = p.run(&["run", "exp.toml"]);
    assert_ne!(out.status.code(), Some(0));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("exp.toml:19:")
            && text.contains("stages.ensemble.needs")
            && text.contains("not scored on the same images"),
        "{text}"
    );
}

#[test]
fn bad_replicates_folds_and_ensembles_name_file_line_and_key() {
    let p = Project::new(pipeline_bin());
    let split_with = |extra: &str| BASE.replace("val_fraction = 0.5\n", &format!("val_fraction = 0.5\n{extra}"));
    // (experiment, line of the fault, what the message says)
    let files: Vec<(String, usize, &str)> = vec![
        (format!("{BASE}\n[sweep]\nreplicates = 0\n"), 20, "at least 1 replicate"),
        (format!("{BASE}\n[sweep]\nreplicates = 2.5\n"), 20, "whole number"),
        (split_with("folds = 1\n"), 11, "at least 2 folds"),
        (split_with("folds = 3\nfold = 3\n"), 12, "folds 0 to 2"),
        (
            format!("{}\n[sweep]\n\"stages.split.fold\" = [0, 1, 2, 3]\n", split_with("folds = 3\n")),
            21,
            "`fold = 3` does not exist",
        ),
        (split_with("fold = 1\n"), 11, "needs `folds = K`"),
        (format!("{BASE}\n[stages.ensemble]\n"), 19, "needs at least 1 upstream stage"),
        (format!("{BASE}\n[stages.ensemble]\nneeds = []\n"), 20, "needs at least 1 upstream stage"),
        (format!("{BASE}\n[stages.ensemble]\nneeds = [\"baseline@replicate\"]\n"), 20, "not a swept axis"),
    ];
    for (text, line, msg) in files {
        p.write("bad.toml", &text);
        let out = p.run(&["run", "bad.toml", "--dry-run"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{text}\n{err}");
        assert!(
            err.contains(&format!("bad.toml:{line}:")) && err.contains(msg),
            "expected line {line} and `{msg}`:\n{err}"
        );
        assert_eq!(err.matches("error").count(), 1, "one message:\n{err}");
    }
}
