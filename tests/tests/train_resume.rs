//! The train stage's checkpoints under faults, end to end with the real binaries on a tiny CPU
//! training: a kill at every point of a checkpoint write resumes to exactly the uninterrupted
//! run's result (metrics and weights, bit for bit); a damaged `state.json` is an error, not a
//! silent restart; a full disk during a checkpoint is reported as such and commits nothing;
//! diverged weights are never named as the last good checkpoint.
//!
//! Faults are injected with `PIPELINE_TEST_FAULT` (see `stages/torch/src/fault.rs`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use polars::prelude::*;

const FAULT: &str = "PIPELINE_TEST_FAULT";

/// Two epochs of a tiny RetinaNet on a tiny synthetic set (seconds per epoch on one core).
fn tiny(p: &Project) {
    p.write(
        "exp.toml",
        r#"[stages.dataset]
synthetic = { images_per_scanner = 3, scale = 0.08, density = 60, seed = 5, scanners = ["XR", "CS2"] }
[stages.split]
preset = "stratified"
test_fraction = 0.34
val_fraction = 0.5
[stages.sample]
patch_size = 64
patches_per_image = 3
[stages.train]
fpn_levels = "p3p5"
fpn_channels = 16
head_channels = 16
head_convs = 1
anchor_sizes = [32.0, 64.0, 128.0]
backbone_norm = "batch"
batch_size = 2
epochs = 2
"#,
    );
}

fn run_with_fault(p: &Project, fault: Option<&str>) -> Output {
    let mut cmd = p.cmd(&["run", "exp.toml", "--jobs", "1"]);
    match fault {
        Some(f) => cmd.env(FAULT, f),
        None => cmd.env_remove(FAULT),
    };
    cmd.output().expect("spawn")
}

fn train_out(p: &Project) -> PathBuf {
    let scores = find_file(&p.path("cache/objects"), "metrics.parquet").expect("a published train entry");
    scores.parent().unwrap().to_path_buf()
}

/// The columns of metrics.parquet that a resumed run must reproduce exactly (not the timings).
fn deterministic_metrics(dir: &Path) -> Vec<(String, Vec<Option<f64>>)> {
    let file = std::fs::File::open(dir.join("metrics.parquet")).unwrap();
    let df = ParquetReader::new(file).finish().unwrap();
    ["epoch", "step", "lr", "loss", "cls_loss", "box_loss", "val_loss", "val_f1", "val_threshold"]
        .iter()
        .map(|c| {
            let col = df.column(c).unwrap().cast(&DataType::Float64).unwrap();
            (c.to_string(), col.f64().unwrap().iter().collect())
        })
        .collect()
}

/// A safetensors file as (header, tensor bytes): the header's JSON compared as a value, since
/// its `__metadata__` map is written in hash order.
type Tensors = (serde_json::Value, Vec<u8>);

fn tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    (header, bytes[8 + len..].to_vec())
}

type Outcome = (Vec<(String, Vec<Option<f64>>)>, Tensors, Tensors);

fn outcome(dir: &Path) -> Outcome {
    let read = |f: &str| tensors(&dir.join("checkpoints").join(f));
    (deterministic_metrics(dir), read("last.safetensors"), read("best.safetensors"))
}

#[test]
fn a_kill_at_every_checkpoint_write_resumes_to_the_uninterrupted_result() {
    let reference = Project::new(pipeline_bin());
    tiny(&reference);
    let out = run_with_fault(&reference, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = outcome(&train_out(&reference));

    // Each run is killed at the next point; the following run resumes from whatever the kill
    // left. Before the rename a kill must lose the epoch; after it, keep it.
    let chains: [&[&str]; 2] = [
        &["weights@1", "optimizer@1", "best@1", "state@1", "synced@1", "renamed@1", "best@2", "renamed@2"],
        &["cleaned@1", "cleaned@2"],
    ];
    for chain in chains {
        let p = Project::new(pipeline_bin());
        tiny(&p);
        for fault in chain {
            let out = run_with_fault(&p, Some(fault));
            assert!(!out.status.success(), "the run with {FAULT}={fault} was not killed:\n{}", stderr(&out));
            assert!(find_file(&p.path("cache/objects"), "metrics.parquet").is_none(), "published after {fault}");
        }
        let out = run_with_fault(&p, None);
        assert!(out.status.success(), "after {chain:?}: {}", stderr(&out));
        let log = std::fs::read_to_string(train_out(&p).parent().unwrap().join("log.txt")).unwrap();
        assert!(log.contains("resuming after epoch 2"), "the last run did not resume:\n{log}");
        assert_eq!(outcome(&train_out(&p)), expected, "after the kills {chain:?} the result differs");
    }
}

#[test]
fn a_damaged_state_json_is_an_error_naming_it_not_a_silent_restart() {
    let p = Project::new(pipeline_bin());
    tiny(&p);
    let out = run_with_fault(&p, Some("cleaned@1"));
    assert!(!out.status.success());
    let state = find_file(&p.path("cache/work"), "state.json").expect("epoch 1's state.json");
    std::fs::write(&state, b"{\"epochs_done\": 1, \"global_st").unwrap();
    let out = run_with_fault(&p, None);
    let err = stderr(&out);
    assert!(!out.status.success(), "a damaged state.json was ignored:\n{err}");
    assert!(err.contains(&state.display().to_string()) && err.contains("damaged"), "{err}");
}

#[test]
fn a_full_disk_during_a_checkpoint_is_reported_as_such_and_commits_nothing() {
    let p = Project::new(pipeline_bin());
    tiny(&p);
    let out = run_with_fault(&p, Some("optimizer@1:enospc"));
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("optimizer.safetensors: No space left on device"), "{err}");
    assert!(!err.contains("not a readable safetensors file"), "{err}");
    // Nothing of epoch 1 was committed: the rerun trains it from the start and succeeds.
    let out = run_with_fault(&p, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read_to_string(train_out(&p).parent().unwrap().join("log.txt")).unwrap();
    assert!(!log.contains("resuming"), "{log}");
}

#[test]
fn diverged_weights_are_never_named_as_the_last_good_checkpoint() {
    let p = Project::new(pipeline_bin());
    tiny(&p);
    // Epoch 1 commits; epoch 2's last step leaves NaN weights, so its validation loss is NaN.
    let out = run_with_fault(&p, Some("trained@2:nan"));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("validation loss became NaN after epoch 2"), "{err}");
    assert!(err.contains("epoch-0001/last.safetensors (after epoch 1)"), "{err}");
    assert!(!err.contains("fp32"), "fp32 suggested although fp32 was in use:\n{err}");
    // In epoch 1 nothing finished before.
    let p = Project::new(pipeline_bin());
    tiny(&p);
    let out = run_with_fault(&p, Some("trained@1:nan"));
    let err = stderr(&out);
    assert!(err.contains("after epoch 1") && err.contains("no good checkpoint"), "{err}");
}
