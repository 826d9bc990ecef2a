//! The benchmark commands' JSON reports carry the diagnostics the GPU checks read
//! (bench/gpu-checks.sh): per-phase step times, the decode-wait share of inference, and whether
//! cuDNN's autotuner was on. Run on the CPU at toy sizes; no timing is asserted, only that each
//! figure exists and is consistent.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn pipeline_torch() -> PathBuf {
    std::env::var_os("PIPELINE_TORCH_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pipeline-torch")))
}

fn report(args: &[&str]) -> Value {
    let out = Command::new(pipeline_torch()).args(args).output().expect("start pipeline-torch");
    assert!(
        out.status.success(),
        "pipeline-torch {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in {text}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn train_breakdown_reports_every_phase() {
    let r = report(&[
        "bench",
        "train",
        "--batch",
        "2",
        "--size",
        "128",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--device",
        "cpu",
        "--breakdown",
        "--json",
    ]);
    let phases = &r["phases_ms"];
    for k in ["input_ms", "forward_loss_ms", "backward_ms", "optimizer_ms"] {
        let v = phases[k].as_f64().unwrap_or_else(|| panic!("{k} missing in {r}"));
        assert!(v > 0.0 && v.is_finite(), "{k} = {v}");
    }
    assert!(r["img_per_s"].as_f64().unwrap() > 0.0);
    // On the CPU there is neither a utilisation figure nor an autotuner.
    assert!(r["gpu_utilisation_percent"].is_null());
    assert_eq!(r["cudnn_benchmark"], Value::Bool(false));

    // Without --breakdown no phase times are reported.
    let r = report(&[
        "bench", "train", "--batch", "1", "--size", "128", "--steps", "1", "--warmup", "0", "--device", "cpu", "--json",
    ]);
    assert!(r["phases_ms"].is_null(), "{r}");
}

#[test]
fn infer_reports_decode_wait_share_and_threads() {
    let r = report(&[
        "bench",
        "infer",
        "--width",
        "700",
        "--height",
        "520",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--json",
    ]);
    let wait = r["decode_wait_fraction"].as_f64().unwrap_or_else(|| panic!("no decode_wait_fraction in {r}"));
    assert!((0.0..=1.0).contains(&wait), "decode_wait_fraction = {wait}");
    assert_eq!(r["decode_threads"], 1);
    assert_eq!(r["tiles"], 4, "700 × 520 px in 512 px tiles every 460 px: 2 × 2 tiles");
    assert!(r["seconds_per_image"].as_f64().unwrap() > 0.0);
}
