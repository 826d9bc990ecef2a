//! End to end with the real `pipeline` and `pipeline-torch` on a small synthetic dataset: the
//! quickstart experiment at CI size (dataset → … → report on CPU), its freshness after an edit,
//! the export table read back with polars, external scoring, inspection, and the train stage's
//! resume and failure behaviour.
//!
//! The expensive flow (training) runs once, in one test function, so parallel test threads do
//! not fight over the two cores CI has.

mod common;

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
    assert!(
        std::fs::read_dir(train.join("tensorboard"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("events.out.tfevents"))
    );

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

    // 3. Nothing changed: everything is cached.
    let again = p.run_json("exp.toml");
    assert!(again.len() >= 8 && again.values().all(|s| s == "cached"), "{again:?}");

    // 4. Change the NMS radius: only nms, score and report run; the model comes from the cache.
    let text = std::fs::read_to_string(p.path("exp.toml")).unwrap();
    p.write("exp.toml", &format!("{text}\n[stages.nms]\nradius_px = 20\n"));
    let edited = p.run_json("exp.toml");
    assert_eq!(with_status(&edited, "ran"), ["nms", "report", "score"], "{edited:?}");

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
