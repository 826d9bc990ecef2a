//! The experiment files users get: every one resolves (sweeps expanded, variants named, every
//! param valid), and the cheap studies run end to end at a tiny scale with the real binaries —
//! the shipped file itself, extended only to shrink data and models (and to one seed, two for the
//! ensemble of seeds). The expensive ones (domain-shift, hyperparams, cross-validation) are run at
//! the study scale by `bench/studies.sh`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

fn experiments() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("experiments")
}

/// Train-stage keys that shrink a model to test size (any train stage of any shipped file).
const TINY_TRAIN: &str = r#"fpn_channels = 32
head_channels = 32
head_convs = 1
batch_size = 4
epochs = 1
"#;

/// `NAME.toml` extended with the sizes of a test: a few small images, few small patches, one
/// epoch of a narrow model, one seed. `train_stages` lists the file's train stages beyond `train`.
fn tiny(p: &Project, name: &str, train_stages: &[&str]) -> String {
    tiny_with(p, name, train_stages, 1)
}

/// [`tiny`] with `replicates` seeds.
fn tiny_with(p: &Project, name: &str, train_stages: &[&str], replicates: u32) -> String {
    let mut text = format!(
        r#"[experiment]
name = "{name}-ci"
extends = "{}"

[stages.dataset]
synthetic = {{ images_per_scanner = 3, scale = 0.08, density = 60, seed = 5 }}

[stages.split]
preset = "stratified"
val_fraction = 0.34
test_fraction = 0.34

[stages.sample]
patch_size = 128
patches_per_image = 4

[stages.tile_infer]
tile_size = 256

[sweep]
replicates = {replicates}
"#,
        experiments().join(format!("{name}.toml")).display()
    );
    for stage in std::iter::once("train").chain(train_stages.iter().copied()) {
        text.push_str(&format!("\n[stages.{stage}]\n{TINY_TRAIN}"));
    }
    let file = format!("{name}-ci.toml");
    p.write(&file, &text);
    file
}

fn ran(r: &BTreeMap<String, String>, stage: &str) -> usize {
    r.iter().filter(|(k, v)| (k.as_str() == stage || k.starts_with(&format!("{stage}@"))) && *v == "ran").count()
}

#[test]
fn every_shipped_experiment_resolves() {
    let p = Project::new(pipeline_bin());
    // midog-baseline reads real MIDOG files: point it at a small synthetic set in MIDOG's format.
    let synth = p.run(&["synth", "data", "--images-per-scanner", "1", "--scale", "0.05", "--seed", "1"]);
    assert!(synth.status.success(), "{}", stderr(&synth));
    // The MIDOG++ files read real MIDOG++ data: a small synthetic set in its layout stands in.
    let synth = p.run(&[
        "synth",
        "data-pp",
        "--tumor-types",
        "all",
        "--images-per-tumor-type",
        "1",
        "--images-per-scanner",
        "1",
        "--scale",
        "0.05",
        "--seed",
        "1",
    ]);
    assert!(synth.status.success(), "{}", stderr(&synth));
    let mut seen = 0;
    for entry in std::fs::read_dir(experiments()).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let file = if stem.starts_with("midogpp") {
            p.write("weights.safetensors", "placeholder");
            let name = format!("{stem}-check.toml");
            p.write(
                &name,
                &format!(
                    "[experiment]\nname = \"{stem}-check\"\nextends = \"{}\"\n[stages.dataset]\nroot = \"{}\"\n\
                     annotations = \"MIDOG++.json\"\ndomains = \"datasets_xvalidation.csv\"\n\
                     [stages.train]\nbackbone_weights = \"{}\"\n",
                    path.display(),
                    p.path("data-pp").display(),
                    p.path("weights.safetensors").display()
                ),
            );
            p.path(&name)
        } else if stem == "midog-baseline" {
            // It also starts from ImageNet weights; a dry run checks the file is there but
            // reads no tensors, so a placeholder stands in.
            p.write("weights.safetensors", "placeholder");
            p.write(
                "baseline.toml",
                &format!(
                    "[experiment]\nname = \"baseline-check\"\nextends = \"{}\"\n[stages.dataset]\nroot = \"{}\"\n\
                     [stages.train]\nbackbone_weights = \"{}\"\n",
                    path.display(),
                    p.path("data").display(),
                    p.path("weights.safetensors").display()
                ),
            );
            p.path("baseline.toml")
        } else {
            path.clone()
        };
        let out = p.run(&["run", file.to_str().unwrap(), "--dry-run", "--json"]);
        assert!(out.status.success(), "{stem}: {}\n{}", stdout(&out), stderr(&out));
        let stages = statuses(&out);
        assert!(stages.keys().any(|s| s.starts_with("report")), "{stem} has no report stage: {stages:?}");
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} experiment files found");
}

#[test]
fn midog_baseline_is_planned_before_the_data_and_weights_are_there() {
    // A checkout without data/ and weights/: the shipped file as it is, in a fresh directory.
    let p = Project::new(pipeline_bin());
    let shipped = std::fs::read_to_string(experiments().join("midog-baseline.toml")).unwrap();
    p.write("experiments/midog-baseline.toml", &shipped);
    let file = "experiments/midog-baseline.toml";
    let out = p.run(&["status", file]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}
{}",
        stderr(&out)
    );
    let row =
        |stage: &str| text.lines().find(|l| l.starts_with(&format!("{stage} "))).unwrap_or_else(|| panic!("{text}"));
    assert!(row("dataset").contains("input missing") && row("dataset").ends_with(" data/midog/MIDOG.json"), "{text}");
    let weights = " weights/resnet18-imagenet.safetensors";
    assert!(row("train").contains("input missing") && row("train").ends_with(weights), "{text}");
    for stage in ["split", "sample", "tile_infer", "nms", "score", "report"] {
        assert!(row(stage).contains("waiting for input"), "{stage}: {text}");
    }
    assert_eq!(p.run(&["status", file, "--check"]).status.code(), Some(1));
    let dag = p.run(&["dag", file, "--format", "mermaid"]);
    assert!(dag.status.success() && stdout(&dag).contains("tile_infer --> nms"), "{}", stdout(&dag));
    let run = p.run(&["run", file]);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("no MIDOG.json or MIDOG++.json in"), "{}", stderr(&run));
    // The file names the command that gets its weights, and the command is there.
    assert!(shipped.contains("bin/pipeline weights fetch resnet18"));
    let help = p.run(&["weights", "fetch", "--help"]);
    assert!(help.status.success() && stdout(&help).contains("backbone_weights"), "{}", stderr(&help));
}

#[test]
fn cheap_studies_run_end_to_end_with_shared_upstream_computed_once() {
    let p = Project::new(pipeline_bin());

    // overlap: one training, four inferences, four named variants.
    let file = tiny(&p, "overlap", &[]);
    let r = p.run_json(&file);
    for v in ["overlap=0", "overlap=0.1", "overlap=0.25", "overlap=0.5"] {
        assert!(r.contains_key(&format!("tile_infer@{v}")), "no variant {v}: {r:?}");
    }
    assert_eq!(ran(&r, "dataset"), 1, "{r:?}");
    assert_eq!(ran(&r, "train"), 1, "the training is shared by every overlap: {r:?}");
    assert_eq!(ran(&r, "tile_infer"), 4, "{r:?}");
    let cmp = p.run(&["compare", &file, "-o", "cmp-overlap"]);
    assert!(cmp.status.success(), "{}", stderr(&cmp));
    let text = stdout(&cmp);
    assert!(text.contains("overlap") && text.contains("XR"), "{text}");
    let pngs = std::fs::read_dir(p.path("cmp-overlap"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"));
    assert!(pngs.count() >= 1, "compare wrote no chart");
    assert!(text.contains("Supported by the data"), "compare says nothing about the differences:\n{text}");
    assert!(p.path("cmp-overlap/paired.parquet").is_file() && p.path("cmp-overlap/compare.md").is_file());

    // ensemble: two seeds of the overlap run's recipe (seed 0 is its training, from the cache)
    // and their merged detections, scored and compared against the single models.
    let file = tiny_with(&p, "ensemble", &[], 2);
    let r = p.run_json(&file);
    assert_eq!(r["train@replicate=0"], "cached", "replicate 0 is the recipe as written: {r:?}");
    assert_eq!(r["train@replicate=1"], "ran", "{r:?}");
    assert_eq!((r["ensemble@replicate=0"].as_str(), r["ensemble@replicate=1"].as_str()), ("ran", "cached"), "{r:?}");
    let cmp = p.run(&["compare", &file, "-o", "cmp-ensemble"]);
    assert!(cmp.status.success(), "{}", stderr(&cmp));
    let text = stdout(&cmp);
    assert!(text.contains("pooled over replicate") && text.contains("score_ensemble"), "{text}");
    assert!(text.contains("score_ensemble") && text.contains("ΔF1"), "no paired difference with the ensemble:\n{text}");
    // A third seed would train one model and rerun the ensemble, its score and the reports.
    p.write(&file, &std::fs::read_to_string(p.path(&file)).unwrap().replace("replicates = 2", "replicates = 3"));
    let dry = p.run(&["run", &file, "--dry-run", "--json"]);
    let planned = statuses(&dry);
    let to_run: Vec<&String> = planned.iter().filter(|(_, s)| *s != "cached").map(|(k, _)| k).collect();
    for k in &to_run {
        assert!(
            k.ends_with("replicate=2") || ["ensemble@", "score_ensemble@", "report@"].iter().any(|p| k.starts_with(p)),
            "{k} would rerun: {planned:?}"
        );
    }
    assert!(
        to_run.iter().any(|k| k.as_str() == "train@replicate=2") && to_run.iter().any(|k| k.starts_with("ensemble@"))
    );

    // sampling: three strategies, three samples and trainings; dataset and split come from the
    // overlap run's cache (same data, same split).
    let file = tiny(&p, "sampling", &[]);
    let r = p.run_json(&file);
    assert_eq!(ran(&r, "dataset") + ran(&r, "split"), 0, "shared with the overlap run: {r:?}");
    assert_eq!(ran(&r, "sample"), 2, "mitosis-centred is the overlap run's: {r:?}");
    assert_eq!(ran(&r, "train"), 2, "{r:?}");

    // detectors: RetinaNet r18 (cached from above), RetinaNet r50 and CenterNet, one report.
    let file = tiny(&p, "detectors", &["train_r50", "train_centernet"]);
    let r = p.run_json(&file);
    assert_eq!(r["train"], "cached", "{r:?}");
    assert_eq!(r["train_r50"], "ran", "{r:?}");
    assert_eq!(r["train_centernet"], "ran", "{r:?}");
    assert_eq!(r["report"], "ran", "{r:?}");
    let export = p.run(&["export", &file, "-o", "detectors.parquet"]);
    assert!(export.status.success(), "{}", stderr(&export));
    let cmp = p.run(&["compare", &file, "-o", "cmp-detectors"]);
    assert!(cmp.status.success(), "{}", stderr(&cmp));
    let text = stdout(&cmp);
    for stage in ["score_r50", "score_centernet", "score_baseline"] {
        assert!(text.contains(stage), "compare lacks {stage}:\n{text}");
    }
}

#[test]
fn tumour_shift_runs_end_to_end_on_a_synthetic_midogpp_set() {
    let p = Project::new(pipeline_bin());
    let mut text = format!(
        r#"[experiment]
name = "tumour-shift-ci"
extends = "{}"

[stages.dataset]
synthetic = {{ images_per_scanner = 3, scanners = ["XR", "GT450"], scale = 0.08, density = 60, seed = 5, tumor_types = ["human breast cancer", "canine lymphosarcoma", "human melanoma"], images_per_tumor_type = 4, test_fraction = 0.25 }}

[stages.sample]
patch_size = 128
patches_per_image = 4

[stages.tile_infer]
tile_size = 256
"#,
        experiments().join("tumour-shift.toml").display()
    );
    text.push_str(&format!("\n[stages.train]\n{TINY_TRAIN}"));
    p.write("tumour-shift-ci.toml", &text);
    let r = p.run_json("tumour-shift-ci.toml");
    for v in ["all-tumour-types", "without-lymphosarcoma", "without-melanoma"] {
        assert_eq!(r.get(&format!("report@{v}")).map(String::as_str), Some("ran"), "{v}: {r:?}");
    }
    assert_eq!(ran(&r, "dataset"), 1, "one synthetic set for every variant: {r:?}");
    assert_eq!(ran(&r, "train"), 3, "{r:?}");
    // Each variant's split keeps its left-out type out of training and validation, in the test set.
    let splits: Vec<serde_json::Value> = p
        .published()
        .iter()
        .map(|e| e.join("out/split.json"))
        .filter(|f| f.is_file())
        .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
        .collect();
    assert_eq!(splits.len(), 3, "one split per variant");
    for block in [245..=299u64, 505..=553] {
        let out = splits.iter().find(|s| {
            let trained = |k: &str| s[k].as_array().unwrap().iter().any(|v| block.contains(&v.as_u64().unwrap()));
            !trained("train") && !trained("val")
        });
        let out = out.unwrap_or_else(|| panic!("no variant leaves out ids {block:?}: {splits:?}"));
        assert!(out["test"].as_array().unwrap().iter().any(|v| block.contains(&v.as_u64().unwrap())), "{out}");
    }
    // The comparison the file's header promises: F1 and paired differences per tumour type.
    let out = p.run(&["compare", "tumour-shift-ci.toml", "-o", "cmp"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in ["f1 per tumour type", "f1 human melanoma", "ΔF1 canine lymphosarcoma", "ΔF1 human breast cancer"]
    {
        assert!(text.contains(expected), "compare lacks `{expected}`:\n{text}");
    }
    assert!(p.path("cmp/paired_f1_tumor_type.png").is_file());
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The cache entries (their `out/` directories) of one stage kind, every variant.
fn entries_of(p: &Project, kind: &str) -> Vec<PathBuf> {
    p.published()
        .into_iter()
        .filter(|e| read_json(&e.join("record.json"))["inputs"]["kind"] == kind)
        .map(|e| e.join("out"))
        .collect()
}

#[test]
fn domain_generalization_study_runs_and_held_out_labels_only_score() {
    let p = Project::new(pipeline_bin());
    let file = tiny(&p, "domain-generalization", &[]);
    // Every method at CI size: 4 images per scanner, so 2 GT450 test images and 2 unlabelled.
    let text =
        std::fs::read_to_string(p.path(&file)).unwrap().replace("images_per_scanner = 3", "images_per_scanner = 4");
    p.write(&file, &text);
    let r = p.run_json(&file);
    for v in ["none", "hed-jitter", "stain-norm", "fourier", "dann", "fourier-dann", "oracle"] {
        assert_eq!(r.get(&format!("train@{v}")).map(String::as_str), Some("ran"), "variant {v}: {r:?}");
        assert!(r.contains_key(&format!("report@{v}")), "no report for {v}: {r:?}");
    }
    assert_eq!(ran(&r, "split"), 2, "one split for the held-out test, one for the oracle: {r:?}");

    // The held-out labels: in the dataset's heldout.json, never in dataset.json.
    let dataset = entries_of(&p, "dataset");
    assert_eq!(dataset.len(), 1);
    let heldout = read_json(&dataset[0].join("heldout.json"));
    let held_boxes: Vec<serde_json::Value> =
        heldout["images"].as_array().unwrap().iter().flat_map(|i| i["mitoses"].as_array().unwrap().clone()).collect();
    let held_ids: Vec<u64> = heldout["images"].as_array().unwrap().iter().map(|i| i["id"].as_u64().unwrap()).collect();
    assert_eq!(held_ids, [151, 152, 153, 154]);
    assert!(!held_boxes.is_empty(), "the synthetic GT450 has mitoses");
    let manifest = read_json(&dataset[0].join("dataset.json"));
    for img in manifest["images"].as_array().unwrap() {
        if img["scanner"] == "GT450" {
            assert!(img["mitoses"].as_array().unwrap().is_empty() && img["labelled"] == false, "{img}");
        }
    }

    // Outside the oracle, no training, validation or sample artifact holds a held-out id or box.
    for split_dir in entries_of(&p, "split") {
        let split = read_json(&split_dir.join("split.json"));
        let ids = |k: &str| -> Vec<u64> { split[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect() };
        let oracle = ids("train").iter().any(|id| *id > 150);
        let gt450_test: Vec<u64> = ids("test").into_iter().filter(|id| *id > 150).collect();
        assert_eq!(gt450_test.len(), 2, "{split}");
        if !oracle {
            assert!(ids("train").iter().chain(&ids("val")).all(|id| *id <= 150), "{split}");
            assert_eq!(ids("heldout"), gt450_test, "only the test images' labels are used");
        }
    }
    let mut non_oracle_plans = 0;
    for plan_dir in entries_of(&p, "sample") {
        let text = std::fs::read_to_string(plan_dir.join("plan.json")).unwrap();
        let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
        let images: Vec<&serde_json::Value> =
            plan["train"].as_array().unwrap().iter().chain(plan["val"].as_array().unwrap()).collect();
        if images.iter().any(|i| i["id"].as_u64().unwrap() > 150) {
            continue; // the oracle trains on the other GT450 images, with their labels
        }
        non_oracle_plans += 1;
        for b in &held_boxes {
            assert!(!text.contains(&b.to_string()), "held-out box {b} in {}", plan_dir.display());
        }
        assert!(plan["val_patches"].as_array().unwrap().iter().all(|v| v["image_id"].as_u64().unwrap() <= 150));
    }
    assert!(non_oracle_plans >= 1);
    for train_dir in entries_of(&p, "train") {
        for entry in std::fs::read_dir(&train_dir).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(entry.path()).unwrap();
                assert!(held_boxes.iter().all(|b| !text.contains(&b.to_string())), "{}", entry.path().display());
            }
        }
    }

    // The held-out scanner is scored, with its held-out labels, in every variant.
    for score_dir in entries_of(&p, "score") {
        let scores = read_json(&score_dir.join("scores.json"));
        let text = scores.to_string();
        assert!(text.contains("GT450"), "no GT450 score in {}", score_dir.display());
    }
    let cmp = p.run(&["compare", &file, "-o", "cmp-dg"]);
    assert!(cmp.status.success(), "{}", stderr(&cmp));
    assert!(stdout(&cmp).contains("GT450"), "{}", stdout(&cmp));
}
