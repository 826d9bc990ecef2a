//! The bootstrap against an independent reference: numpy, through the pipeline's Python, sums the
//! counts of the very resamples the library drew, computes F1, precision and recall with the
//! official formulas, and takes `np.percentile`; intervals and paired differences must agree.

#[path = "../../torch/src/python_env.rs"]
mod python;

use std::process::Command;

use midog_eval::{Bootstrap, Counts};
use python::pipeline_python;

const REFERENCE: &str = r#"
import json, sys
import numpy as np
case = json.load(open(sys.argv[1]))
q = np.array([case["q_lo"], case["q_hi"]])

def metrics(counts, draws):
    s = counts[np.array(draws)].sum(axis=1).astype(np.float64)   # resamples × (tp, fp, fn)
    tp, fp, fn = s[:, 0], s[:, 1], s[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 1.0)
    return f1, precision, recall

a = np.array(case["a"], dtype=np.int64)
b = np.array(case["b"], dtype=np.int64)
f1_a, p_a, r_a = metrics(a, case["draws"])
f1_b, _, _ = metrics(b, case["draws"])
out = {name: list(np.percentile(v, q * 100)) for name, v in [("f1", f1_a), ("precision", p_a), ("recall", r_a)]}
out["difference"] = list(np.percentile(f1_a - f1_b, q * 100))
print(json.dumps(out))
"#;

#[test]
fn intervals_and_paired_differences_match_numpy() {
    // Per-image counts of two detectors on the same 37 images, irregular on purpose (some images
    // without mitoses, some without detections).
    let a: Vec<Counts> = (0..37u64).map(|i| Counts::new((i * 7) % 5, (i * 3) % 4, (i * 11) % 3)).collect();
    let b: Vec<Counts> = a
        .iter()
        .enumerate()
        .map(|(i, c)| Counts::new(c.tp / 2, c.fp + (i as u64 % 2), c.fn_ + c.tp - c.tp / 2))
        .collect();
    let plan = Bootstrap { resamples: 2000, level: 0.95, seed: 42 };
    let stream = Bootstrap::stream("test/all");
    let draws: Vec<Vec<usize>> = (0..plan.resamples).map(|r| plan.image_indices(&a, stream, r)).collect();
    let (q_lo, q_hi) = plan.quantiles();
    let as_rows = |v: &[Counts]| v.iter().map(|c| [c.tp, c.fp, c.fn_]).collect::<Vec<_>>();
    let case = serde_json::json!({"a": as_rows(&a), "b": as_rows(&b), "draws": draws, "q_lo": q_lo, "q_hi": q_hi});
    let dir = tempfile::tempdir().unwrap();
    let case_path = dir.path().join("case.json");
    std::fs::write(&case_path, serde_json::to_vec(&case).unwrap()).unwrap();
    let script = dir.path().join("reference.py");
    std::fs::write(&script, REFERENCE).unwrap();

    let python = pipeline_python();
    let out = Command::new(&python).arg(&script).arg(&case_path).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {} ({e}): the pipeline's Python with numpy is needed; bin/test installs it \
             (or point PIPELINE_PYTHON at one)",
            python.display()
        )
    });
    assert!(out.status.success(), "numpy reference failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pair = |name: &str| (reference[name][0].as_f64().unwrap(), reference[name][1].as_f64().unwrap());

    let got = plan.intervals(&a, stream).unwrap();
    for (name, interval) in [("f1", got.f1), ("precision", got.precision), ("recall", got.recall)] {
        let (lo, hi) = pair(name);
        assert!(
            (interval.lo - lo).abs() < 1e-12 && (interval.hi - hi).abs() < 1e-12,
            "{name}: {interval:?} vs numpy [{lo}, {hi}]"
        );
    }
    let d = plan.paired_f1_difference(std::slice::from_ref(&a), std::slice::from_ref(&b), stream).unwrap();
    let (lo, hi) = pair("difference");
    assert!((d.interval.lo - lo).abs() < 1e-12 && (d.interval.hi - hi).abs() < 1e-12, "{d:?} vs numpy [{lo}, {hi}]");
    let total = |v: &[Counts]| v.iter().copied().sum::<Counts>().f1();
    assert!((d.difference - (total(&a) - total(&b))).abs() < 1e-15);
    assert!(d.interval.lo > 0.0, "a is clearly better than b here: {d:?}");
}
