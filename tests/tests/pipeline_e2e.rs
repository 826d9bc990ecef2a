//! End to end with the real `pipeline` and `pipeline-torch` on a small synthetic dataset: the
//! quickstart experiment at CI size (dataset → … → report on CPU), its freshness after an edit,
//! the export table read back with polars, external scoring, inspection, and the train stage's
//! resume and failure behaviour.
//!
//! The expensive flow (training) runs once, in one test function, so parallel test threads do
//! not fight over the two cores CI has.

mod common;
#[path = "../../stages/torch/src/python_env.rs"]
mod python;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;
use polars::prelude::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The shipped quickstart, made smaller for CI (the file is the one users run; only sizes change).
fn ci_experiment(p: &Project) {
    let quickstart = repo().join("experiments/quickstart.toml");
    p.write(
        "exp.toml",
        &format!(
            r#"[experiment]
name = "quickstart-ci"
extends = "{}"

[stages.dataset]
synthetic = {{ images_per_scanner = 6, scale = 0.12, density = 80, seed = 2021 }}

[stages.train]
epochs = 3
"#,
            quickstart.display()
        ),
    );
}

fn read_table(path: &Path) -> DataFrame {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(file).finish().unwrap()
}

fn key_of(p: &Project, exp: &str, stage: &str) -> String {
    let out = p.run(&["status", exp, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().iter().find(|r| r["stage"] == stage).unwrap()["key"].as_str().unwrap().to_string()
}

fn out_dir(p: &Project, key: &str) -> PathBuf {
    p.path(&format!("cache/objects/{}/{key}/out", &key[..2]))
}

#[test]
fn quickstart_runs_end_to_end_learns_and_reruns_only_what_changed() {
    let p = Project::new(pipeline_bin());
    ci_experiment(&p);

    // 1. The whole DAG runs and ends with the per-scanner table.
    let out = p.run(&["run", "exp.toml"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    for stage in ["dataset", "split", "sample", "train", "tile_infer", "nms", "score", "report"] {
        assert!(text.lines().any(|l| l.starts_with(stage) && l.contains(" ran ")), "{stage} did not run:\n{text}");
    }
    for scanner in ["XR", "S360", "CS2", "all"] {
        assert!(text.lines().any(|l| l.starts_with(scanner)), "no row for {scanner}:\n{text}");
    }
    assert!(!text.lines().any(|l| l.starts_with("GT450")), "GT450 has no labels and must not be scored:\n{text}");

    // 2. Training learned: the loss falls and validation F1 passes the stated bar.
    let train = out_dir(&p, &key_of(&p, "exp.toml", "train"));
    let metrics = read_table(&train.join("metrics.parquet"));
    let loss: Vec<f64> = metrics.column("loss").unwrap().f64().unwrap().into_no_null_iter().collect();
    assert_eq!(loss.len(), 3);
    assert!(loss[2] < loss[0], "training loss did not fall: {loss:?}");
    let val_f1: Vec<f64> = metrics.column("val_f1").unwrap().f64().unwrap().into_no_null_iter().collect();
    let best = val_f1.iter().cloned().fold(0.0, f64::max);
    assert!(best >= 0.15, "validation F1 on patches after 3 epochs is {best:.3}, below the 0.15 bar ({val_f1:?})");
    for f in ["checkpoints/best.safetensors", "checkpoints/last.safetensors", "loss.png", "val_f1.png"] {
        assert!(train.join(f).is_file(), "train output lacks {f}");
    }
    check_tensorboard(&train, &metrics);

    let report = out_dir(&p, &key_of(&p, "exp.toml", "report"));
    for f in [
        "report.md",
        "report.html",
        "report.parquet",
        // One PR and one F1-against-threshold chart per score stage (the model and the baseline).
        "pr_curves_score.png",
        "pr_curves_score_baseline.png",
        "f1_threshold_score.png",
        "f1_threshold_score_baseline.png",
        "f1_by_scanner.png",
        "gallery.png",
        "summary.txt",
    ] {
        assert!(report.join(f).is_file(), "report lacks {f}");
    }
    // Every score comes with its bootstrap interval, or says why it has none.
    let summary = std::fs::read_to_string(report.join("summary.txt")).unwrap();
    assert!(summary.contains("F1 95 % CI"), "{summary}");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("case-level percentile bootstrap") && md.contains("2000 resamples"), "{md}");
    let table = read_table(&report.join("report.parquet"));
    let col = |name: &str| -> Vec<Option<f64>> { table.column(name).unwrap().f64().unwrap().iter().collect() };
    let images: Vec<i64> =
        table.column("images").unwrap().cast(&DataType::Int64).unwrap().i64().unwrap().into_no_null_iter().collect();
    let notes: Vec<Option<String>> =
        table.column("interval_note").unwrap().str().unwrap().iter().map(|s| s.map(String::from)).collect();
    let (lo, hi) = (col("f1_lo"), col("f1_hi"));
    for i in 0..table.height() {
        match (lo[i], hi[i]) {
            (Some(l), Some(h)) => assert!(l <= h && images[i] >= 2 && notes[i].is_none(), "row {i}: [{l}, {h}]"),
            _ => assert!(notes[i].is_some(), "row {i} has neither an interval nor a reason"),
        }
        if images[i] < 2 {
            assert!(notes[i].as_deref().is_some_and(|n| n.contains("only")), "row {i}: {:?}", notes[i]);
        }
    }
    assert!(lo.iter().any(Option::is_some), "no row has an interval");

    // 3. Nothing changed: everything is cached.
    let again = p.run_json("exp.toml");
    assert!(again.len() >= 8 && again.values().all(|s| s == "cached"), "{again:?}");

    // 4. Change the NMS radius: only nms, score and report run; the model comes from the cache.
    let text = std::fs::read_to_string(p.path("exp.toml")).unwrap();
    p.write("exp.toml", &format!("{text}\n[stages.nms]\nradius_px = 20\n"));
    let edited = p.run_json("exp.toml");
    assert_eq!(with_status(&edited, "ran"), ["nms", "report", "score"], "{edited:?}");

    // 4b. The results view: the run ends with the paths of its main files, and they are there.
    let out = p.run(&["run", "exp.toml"]);
    let text = stdout(&out);
    for (stage, file) in [
        ("report", "results/quickstart-ci/report/report.html"),
        ("train", "results/quickstart-ci/train/checkpoints/best.safetensors"),
        ("score", "results/quickstart-ci/score/detections_midog.json"),
    ] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(stage) && l.ends_with(file)), "no {file}:\n{text}");
        assert!(p.path(file).is_file(), "{file}");
    }
    let shown = p.run(&["show", "exp.toml", "report", "--path"]);
    assert!(PathBuf::from(stdout(&shown).trim()).join("report.html").is_file(), "{}", stdout(&shown));

    // 4c. `detect --experiment` is `detect --checkpoint <that checkpoint>` with the experiment's
    // tile_infer and nms params and the threshold chosen on validation (radius 20 from step 4).
    let images = dataset_test_images(&p);
    let mut args = vec!["detect", "--experiment", "exp.toml", "-o", "from_experiment.json"];
    args.extend(images.iter().map(|s| s.as_str()));
    let from_exp = p.run(&args);
    assert!(from_exp.status.success(), "{}", stderr(&from_exp));
    let err = stderr(&from_exp);
    let same_as = err.lines().skip_while(|l| !l.ends_with("the same as:")).nth(1).unwrap_or_else(|| panic!("{err}"));
    let explicit: Vec<&str> = same_as.trim().strip_prefix("pipeline ").unwrap().split(' ').collect();
    for part in ["--radius-px 20 ", "--threshold ", "results/quickstart-ci/train/checkpoints/best.safetensors"] {
        assert!(same_as.contains(part), "{part}: {same_as}");
    }
    let explicit: Vec<&str> =
        explicit.iter().map(|a| if *a == "from_experiment.json" { "from_checkpoint.json" } else { a }).collect();
    let from_ckpt = p.run(&explicit);
    assert!(from_ckpt.status.success(), "{}", stderr(&from_ckpt));
    let (a, b) = (
        std::fs::read(p.path("from_experiment.json")).unwrap(),
        std::fs::read(p.path("from_checkpoint.json")).unwrap(),
    );
    assert_eq!(a, b, "detect --experiment and its explicit form differ");
    let dets: serde_json::Value = serde_json::from_slice(&a).unwrap();
    let points: usize = dets.as_object().unwrap().values().map(|v| v["points"].as_array().unwrap().len()).sum();
    assert!(points > 0, "no detections above the chosen threshold on the test images: nothing was compared");

    // 5. Export: one row per split and scanner, params and metrics as columns, readable by polars.
    let export = p.run(&["export", "exp.toml", "-o", "results.parquet"]);
    assert!(export.status.success(), "{}", stderr(&export));
    let df = read_table(&p.path("results.parquet"));
    for col in [
        "experiment",
        "variant",
        "split",
        "scanner",
        "f1",
        "precision",
        "recall",
        "tp",
        "param.train.lr",
        "param.nms.radius_px",
    ] {
        assert!(df.column(col).is_ok(), "export lacks column {col}: {:?}", df.get_column_names());
    }
    let mask: BooleanChunked =
        df.column("score_stage").unwrap().str().unwrap().iter().map(|s| s == Some("score")).collect();
    let model_rows = df.filter(&mask).unwrap();
    let radius: Vec<f64> =
        model_rows.column("param.nms.radius_px").unwrap().f64().unwrap().into_no_null_iter().collect();
    assert!(!radius.is_empty() && radius.iter().all(|r| *r == 20.0), "{radius:?}");
    assert!(df.height() >= 4);
    for col in ["f1_lo", "f1_hi", "precision_lo", "precision_hi", "recall_lo", "recall_hi", "interval_note"] {
        assert!(df.column(col).is_ok(), "export lacks column {col}: {:?}", df.get_column_names());
    }

    // 5b. Compare the network with the baseline on the same test images: a paired difference per
    // scanner, in the terminal and as Parquet, its mark agreeing with its interval.
    let cmp = p.run(&["compare", "exp.toml", "-o", "cmp"]);
    assert!(cmp.status.success(), "{}", stderr(&cmp));
    let text = stdout(&cmp);
    assert!(text.contains("paired 95 % bootstrap") && text.contains("Supported by the data"), "{text}");
    let paired = read_table(&p.path("cmp/paired.parquet"));
    assert_eq!(paired.height(), 4, "one pair (score, score_baseline) × CS2, S360, XR, all");
    let supported: Vec<Option<bool>> = paired.column("supported").unwrap().bool().unwrap().iter().collect();
    let (plo, phi): (Vec<Option<f64>>, Vec<Option<f64>>) = (
        paired.column("lo").unwrap().f64().unwrap().iter().collect(),
        paired.column("hi").unwrap().f64().unwrap().iter().collect(),
    );
    for i in 0..paired.height() {
        if let (Some(l), Some(h), Some(s)) = (plo[i], phi[i], supported[i]) {
            assert_eq!(s, l > 0.0 || h < 0.0, "row {i}: [{l}, {h}] marked {s}");
        }
    }

    // 6. Scoring the stage's own MIDOG JSON with `pipeline score` gives the same test counts.
    let score = out_dir(&p, &key_of(&p, "exp.toml", "score"));
    let scores: serde_json::Value = serde_json::from_slice(&std::fs::read(score.join("scores.json")).unwrap()).unwrap();
    let test_all =
        scores["groups"].as_array().unwrap().iter().find(|g| g["split"] == "test" && g["scanner"] == "all").unwrap();
    let dataset = out_dir(&p, &key_of(&p, "exp.toml", "dataset"));
    let test_images: Vec<String> = scores["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["split"] == "test")
        .map(|i| i["file_name"].as_str().unwrap().to_string())
        .collect();
    let external = p.run(&[
        "score",
        "--ground-truth",
        dataset.join("images/MIDOG.json").to_str().unwrap(),
        "--detections",
        score.join("detections_midog.json").to_str().unwrap(),
        "--images",
        &test_images.join(","),
        "--json",
    ]);
    assert!(external.status.success(), "{}", stderr(&external));
    let ext: serde_json::Value = serde_json::from_slice(&external.stdout).unwrap();
    let overall = &ext["overall"];
    for k in ["tp", "fp", "fn"] {
        assert_eq!(overall[k], test_all[k], "{k}: pipeline score {} vs score stage {}", overall, test_all);
    }

    // 7. Inspect the dataset and a crop of one image.
    let inspect = p.run(&["inspect", dataset.join("images").to_str().unwrap()]);
    assert!(stdout(&inspect).contains("XR") && stdout(&inspect).contains("GT450"), "{}", stdout(&inspect));
    let crop = p.run(&[
        "inspect",
        dataset.join("images/001.tiff").to_str().unwrap(),
        "--region",
        "10,20,64,48",
        "--out",
        "crop.png",
    ]);
    assert!(crop.status.success(), "{}", stderr(&crop));
    assert!(stdout(&crop).contains("tiled") && p.path("crop.png").is_file(), "{}", stdout(&crop));
}

/// The train stage's event file, read back with the real `tensorboard` package: the losses every
/// `log_every` (10) steps as window means that add up to the epoch means, the learning rate at
/// every step, the epoch means and every validation as in `metrics.parquet`.
fn check_tensorboard(train: &Path, metrics: &DataFrame) {
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
ea.Reload()
print(json.dumps({t: [[e.step, e.value] for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}))
"#;
    let out = std::process::Command::new(python::pipeline_python())
        .args(["-c", script])
        .arg(train.join("tensorboard"))
        .output()
        .expect("the pipeline's Python");
    assert!(
        out.status.success(),
        "reading the event file with tensorboard failed (bin/install-python-env --extras installs it):\n{}",
        stderr(&out)
    );
    let tags: BTreeMap<String, Vec<(i64, f64)>> = serde_json::from_slice(&out.stdout).unwrap();
    let col = |name: &str| -> Vec<f64> { metrics.column(name).unwrap().f64().unwrap().into_no_null_iter().collect() };
    let steps: Vec<i64> =
        metrics.column("step").unwrap().u64().unwrap().into_no_null_iter().map(|s| s as i64).collect();
    let total = *steps.last().unwrap();
    // Every step's learning rate; the epochs' values in metrics.parquet are their last steps'.
    let lr = &tags["lr"];
    assert_eq!(lr.iter().map(|p| p.0).collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
    for (step, epoch_lr) in steps.iter().zip(col("lr")) {
        assert!((lr[*step as usize - 1].1 - epoch_lr).abs() <= 1e-6 * epoch_lr.abs(), "lr at {step}");
    }
    // Epoch means and validations at the epochs' last steps.
    let at_epochs = |tag: &str, want: Vec<f64>| {
        let got = &tags[tag];
        assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), steps, "{tag}");
        for (g, w) in got.iter().zip(want) {
            assert!((g.1 - w).abs() <= 1e-6 * w.abs().max(1e-6), "{tag}: {} vs {w}", g.1);
        }
    };
    at_epochs("loss/train", col("loss"));
    at_epochs("loss/val", col("val_loss"));
    at_epochs("f1/val_patches", col("val_f1"));
    // Windows of 10 steps restarting at each epoch; their means, weighted by their lengths,
    // are the epoch means.
    let windows = &tags["step/loss"];
    let mut start = 0;
    let mut w = windows.iter().peekable();
    for (end, epoch_loss) in steps.iter().zip(col("loss")) {
        let (mut sum, mut from) = (0.0, start);
        while let Some(&&(step, mean)) = w.peek() {
            if step > *end {
                break;
            }
            let len = step - from;
            assert!(len == 10 || step == *end, "a window of {len} steps ending at {step}");
            sum += mean * len as f64;
            from = step;
            w.next();
        }
        assert_eq!(from, *end, "the epoch's last window ends with it");
        let mean = sum / (end - start) as f64;
        assert!((mean - epoch_loss).abs() <= 1e-5 * epoch_loss.abs(), "windows {mean} vs epoch {epoch_loss}");
        start = *end;
    }
    for tag in ["step/loss_classification", "step/loss_box", "loss/train_box", "throughput/img_per_s"] {
        assert!(!tags[tag].is_empty(), "{tag} missing: {:?}", tags.keys());
    }
}

/// The test images of the experiment's split, as paths in its dataset entry.
fn dataset_test_images(p: &Project) -> Vec<String> {
    let score = out_dir(p, &key_of(p, "exp.toml", "score"));
    let scores: serde_json::Value = serde_json::from_slice(&std::fs::read(score.join("scores.json")).unwrap()).unwrap();
    let images = out_dir(p, &key_of(p, "exp.toml", "dataset")).join("images");
    scores["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["split"] == "test")
        .map(|i| images.join(i["file_name"].as_str().unwrap()).to_string_lossy().into_owned())
        .collect()
}

/// A tiny training experiment (dataset and patches as small as they go).
fn tiny_train(p: &Project, train_extra: &str) {
    p.write(
        "exp.toml",
        &format!(
            r#"[stages.dataset]
synthetic = {{ images_per_scanner = 3, scale = 0.1, density = 60, seed = 5, scanners = ["XR", "CS2"] }}
[stages.split]
preset = "stratified"
test_fraction = 0.34
val_fraction = 0.5
[stages.sample]
patch_size = 128
patches_per_image = 4
[stages.train]
fpn_levels = "p3p5"
fpn_channels = 32
head_channels = 32
head_convs = 1
anchor_sizes = [32.0, 64.0, 128.0]
backbone_norm = "batch"
batch_size = 4
{train_extra}
"#
        ),
    );
}

#[test]
fn an_interrupted_training_resumes_from_its_last_epoch() {
    let p = Project::new(pipeline_bin());
    tiny_train(&p, "epochs = 40\nlr = 1e-4");
    let mut child = p.cmd(&["run", "exp.toml", "-q"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Wait until two epochs are checkpointed, then kill the whole run.
    wait_for("two finished epochs", 600, || {
        find_file(&p.path("cache/work"), "state.json")
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["epochs_done"].as_u64().unwrap_or(0) >= 2)
    });
    // SAFETY: killing our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Shorten nothing: the same key must continue, not restart. Lower the remaining work by
    // watching the log for the resume line and letting the run finish.
    let out = p.run(&["run", "exp.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let train_key = key_of(&p, "exp.toml", "train");
    let log = std::fs::read_to_string(out_dir(&p, &train_key).parent().unwrap().join("log.txt")).unwrap();
    assert!(log.contains("resuming after epoch"), "the rerun did not resume:\n{log}");
    let metrics = read_table(&out_dir(&p, &train_key).join("metrics.parquet"));
    let epochs: Vec<u32> = metrics.column("epoch").unwrap().u32().unwrap().into_no_null_iter().collect();
    assert_eq!(epochs, (1..=40).collect::<Vec<_>>(), "every epoch once");
}

#[test]
fn a_diverging_loss_stops_with_epoch_step_and_checkpoint() {
    let p = Project::new(pipeline_bin());
    tiny_train(&p, "epochs = 3\nlr = 1e6\noptimizer = \"sgd\"\nschedule = \"constant\"");
    let out = p.run(&["run", "exp.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // Epoch 1's training losses stay finite (about 1e25) but its weights leave validation NaN:
    // epoch 1 must not become the "last good" checkpoint.
    assert!(err.contains("became NaN") && err.contains("epoch 1"), "{err}");
    assert!(err.contains("no good checkpoint") && !err.contains("(after epoch 1)"), "{err}");
    assert!(!err.contains("fp32"), "precision = \"fp32\" suggested although fp32 was in use:\n{err}");
}

#[test]
fn asking_for_cuda_without_cuda_is_an_error_unless_auto() {
    if Path::new("/dev/nvidiactl").exists() {
        eprintln!("skipped: this machine has an NVIDIA driver");
        return;
    }
    let p = Project::new(pipeline_bin());
    tiny_train(&p, "epochs = 1\ndevice = \"cuda\"");
    let out = p.run(&["run", "exp.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("CUDA is not available") && err.contains("device = \"auto\""), "{err}");
}
