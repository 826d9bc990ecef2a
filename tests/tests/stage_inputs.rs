//! Bad inputs to the MIDOG stages, end to end with the real `pipeline` on tiny synthetic data
//! (no training: the blob baseline stands in for the network, so each test takes seconds):
//! file names that leave the dataset root, ground truth without mitoses, labelled images without
//! annotations, impossible probabilities, a corrupt JPEG tile, and clashing `detect` inputs.
//! Each case once made a run write outside the cache, print a wrong score with exit 0, or learn
//! from a grey tile.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

/// A synthetic MIDOG-like set in `dir` (3 images per scanner, tiny), written by `pipeline synth`.
fn synth(p: &Project, dir: &str) -> PathBuf {
    let out = p.run(&["synth", dir, "--images-per-scanner", "3", "--scale", "0.1", "--density", "80", "--seed", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    p.path(dir)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// An experiment on real files under `root`: split, the blob baseline and its score.
fn baseline_experiment(p: &Project, dataset_extra: &str) {
    p.write(
        "exp.toml",
        &format!(
            r#"[stages.dataset]
root = "data"
{dataset_extra}
[stages.split]
preset = "stratified"
test_fraction = 0.34
val_fraction = 0.5
[stages.baseline]
kind = "blob_baseline"
needs = ["split"]
thresholds_sd = [2.0]
min_areas_um2 = [10.0]
max_areas_um2 = [120.0]
[stages.score]
needs = ["baseline"]
"#
        ),
    );
}

/// Every file under `dir` whose name ends with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(suffix) {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

#[test]
fn file_names_that_leave_the_root_are_rejected_and_nothing_is_written_beside_the_images() {
    let p = Project::new(pipeline_bin());
    let data = synth(&p, "data");
    let midog_json = data.join("MIDOG.json");
    let mut midog = read_json(&midog_json);
    let absolute = data.canonicalize().unwrap();
    // What the generator wrote (MIDOG.json, the truth, the held-out labels): nothing may join it.
    let generated = files_ending(&data, ".json");
    for img in midog["images"].as_array_mut().unwrap() {
        let name = img["file_name"].as_str().unwrap().to_string();
        img["file_name"] = json!(absolute.join(name).display().to_string());
    }
    write_json(&midog_json, &midog);
    baseline_experiment(&p, "");

    let out = p.run(&["run", "exp.toml"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "absolute file names were accepted:\n{}\n{err}", stdout(&out));
    assert!(err.contains("is absolute") && err.contains("allow_outside_root"), "{err}");
    assert_eq!(files_ending(&data, ".json"), generated, "something was written beside the images");

    // Opted in, the files are read where they are, and outputs still stay in the cache.
    baseline_experiment(&p, "allow_outside_root = true");
    let out = p.run(&["run", "exp.toml"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(files_ending(&data, ".json"), generated, "written beside the images");
    let score = find_file(&p.path("cache/objects"), "scores.json").expect("a published score entry");
    let midog_dir = score.parent().unwrap().join("midog");
    assert!(!files_ending(&midog_dir, ".json").is_empty(), "no per-image MIDOG JSON in the score entry");

    // A name that climbs out of the root with `..` is rejected the same way.
    std::fs::create_dir_all(p.path("meta")).unwrap();
    for img in midog["images"].as_array_mut().unwrap() {
        let name = Path::new(img["file_name"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
        img["file_name"] = json!(format!("../data/{name}"));
    }
    write_json(&p.path("meta/MIDOG.json"), &midog);
    let text = std::fs::read_to_string(p.path("exp.toml")).unwrap().replace("root = \"data\"", "root = \"meta\"");
    p.write("exp.toml", &text.replace("allow_outside_root = true", ""));
    let out = p.run(&["run", "exp.toml"]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("`..`") && err.contains("../data/001.tiff"), "{err}");
}

#[test]
fn ground_truth_without_a_single_mitosis_is_an_error_not_a_perfect_score() {
    let p = Project::new(pipeline_bin());
    let data = synth(&p, "data");
    let mut midog = read_json(&data.join("MIDOG.json"));
    midog["annotations"] = json!([]);
    write_json(&data.join("MIDOG.json"), &midog);
    baseline_experiment(&p, "");
    let out = p.run(&["run", "exp.toml"]);
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(!out.status.success(), "scored a set without mitoses:\n{text}\n{err}");
    assert!(err.contains("no mitotic figure"), "{err}");
    assert!(!text.contains("1.000"), "{text}");
}

/// MIDOG.json ground truth: 001 (XR) with one mitosis, 055 (S360) labelled but without any
/// annotation, 160 (GT450) unlabelled.
fn small_ground_truth(p: &Project) -> PathBuf {
    let gt = json!({
        "images": [
            {"id": 1, "file_name": "001.tiff", "width": 2000, "height": 2000},
            {"id": 55, "file_name": "055.tiff", "width": 2000, "height": 2000},
            {"id": 160, "file_name": "160.tiff", "width": 2000, "height": 2000}
        ],
        "categories": [{"id": 1, "name": "mitotic figure"}, {"id": 2, "name": "hard negative"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [975, 975, 1025, 1025]}]
    });
    let path = p.path("gt/MIDOG.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    write_json(&path, &gt);
    path
}

fn points(list: &[(f64, f64, Value)]) -> Value {
    let points: Vec<Value> = list
        .iter()
        .map(|(x, y, prob)| json!({"point": [x, y, 0], "probability": prob, "name": "mitotic figure"}))
        .collect();
    json!({"type": "Multiple points", "points": points, "version": {"major": 1, "minor": 0}})
}

#[test]
fn pipeline_score_counts_detections_on_labelled_images_without_annotations() {
    let p = Project::new(pipeline_bin());
    let gt = small_ground_truth(&p);
    // At 0.25 µm/px the mitosis of 001 is at (0.25, 0.25) mm.
    let dets = json!({
        "001.tiff": points(&[(0.25, 0.25, json!(0.9))]),
        "055.tiff": points(&[(0.1, 0.1, json!(0.8))]),
        "160.tiff": points(&[(0.1, 0.1, json!(0.8))]),
    });
    write_json(&p.path("dets.json"), &dets);
    let args = ["score", "--ground-truth", gt.to_str().unwrap(), "--detections", "dets.json", "--um-per-px", "0.25"];
    let out = p.run(&[&args[..], &["--json"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&report["overall"]["tp"], &report["overall"]["fp"]), (&json!(1), &json!(1)), "{report:#}");
    assert_eq!(report["not_scored"], json!(["160.tiff"]), "GT450 (151–200) is unlabelled by definition");

    // The definition is the user's to give: with no unlabelled ids, 160 is a labelled negative.
    let out = p.run(&[&args[..], &["--json", "--unlabelled-ids", "none"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["overall"]["fp"], json!(2), "{report:#}");
}

#[test]
fn probabilities_outside_0_1_or_nan_are_rejected_naming_file_image_and_point() {
    let p = Project::new(pipeline_bin());
    let gt = small_ground_truth(&p);
    for (bad, shown) in [(json!(7.0), "7"), (json!(-1.0), "-1")] {
        let dets = json!({"001.tiff": points(&[(0.25, 0.25, json!(0.9)), (0.3, 0.3, bad)])});
        write_json(&p.path("dets.json"), &dets);
        let out = p.run(&[
            "score",
            "--ground-truth",
            gt.to_str().unwrap(),
            "--detections",
            "dets.json",
            "--um-per-px",
            "0.25",
        ]);
        let err = stderr(&out);
        assert!(!out.status.success(), "probability {shown} was accepted");
        assert!(err.contains("dets.json") && err.contains("001.tiff") && err.contains("points[1]"), "{err}");
        assert!(err.contains(&format!("probability {shown}")) && err.contains("[0, 1]"), "{err}");
    }
    // Python's json.dump writes float('nan') as a bare NaN.
    p.write(
        "nan.json",
        r#"{"001.tiff": {"type": "Multiple points", "points": [
            {"point": [0.25, 0.25, 0], "probability": 0.9},
            {"point": [0.3, 0.3, 0], "probability": NaN}]}}"#,
    );
    let out =
        p.run(&["score", "--ground-truth", gt.to_str().unwrap(), "--detections", "nan.json", "--um-per-px", "0.25"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "a NaN probability was accepted");
    assert!(err.contains("nan.json") && err.contains("001.tiff") && err.contains("points[1]"), "{err}");
    assert!(err.contains("NaN"), "{err}");
}

#[test]
fn detect_refuses_two_inputs_with_the_same_file_name() {
    let p = Project::new(pipeline_bin());
    synth(&p, "a");
    synth(&p, "b");
    let out = p.run(&["detect", "--checkpoint", "model.safetensors", "a/001.tiff", "b/001.tiff", "-o", "dets.json"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("a/001.tiff") && err.contains("b/001.tiff") && err.contains("same file name"), "{err}");
    assert!(!p.path("dets.json").exists());
}

/// Overwrites the middle third of tile `index` of level 0 with seeded noise (headers intact).
fn corrupt_tile(path: &Path, index: usize) -> u64 {
    let image = midog_data::TiffImage::open(path).unwrap();
    let (offset, len) = image.chunk_byte_range(0, index).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for b in &mut bytes[(offset + len / 3) as usize..(offset + 2 * len / 3) as usize] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    std::fs::write(path, bytes).unwrap();
    offset
}

#[test]
fn a_corrupt_jpeg_tile_fails_inspect_and_the_dataset_stage_naming_file_tile_and_offset() {
    let p = Project::new(pipeline_bin());
    let data = synth(&p, "data");
    p.write("exp.toml", "[stages.dataset]\nroot = \"data\"\n");
    // A clean set passes; a second dataset stage over the same files (another key) finds every
    // image already verified by content digest and decodes nothing.
    let out = p.run(&["run", "exp.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    p.write("exp.toml", "[stages.dataset]\nroot = \"data\"\nscanners = { XR = { ids = \"1-200\" } }\n");
    let out = p.run(&["run", "exp.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let logs: Vec<String> = walk_logs(&p.path("cache/objects"));
    assert!(
        logs.iter().any(|l| l.contains("12 of 12 images already verified")),
        "no memoised verification in the logs:\n{logs:#?}"
    );

    let offset = corrupt_tile(&data.join("051.tiff"), 4);
    let out = p.run(&["inspect", "data"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "inspect passed a corrupt file:\n{text}");
    assert!(text.contains("051.tiff") && text.contains("tile 4"), "{text}");

    p.write("exp.toml", "[stages.dataset]\nroot = \"data\"\n");
    let out = p.run(&["run", "exp.toml"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "the dataset stage passed a corrupt tile");
    assert!(err.contains("051.tiff") && err.contains("tile 4") && err.contains(&format!("offset {offset}")), "{err}");
}

/// The text of every `log.txt` of a published entry under `dir`.
fn walk_logs(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else if e.file_name() == "log.txt" {
                out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    out
}
