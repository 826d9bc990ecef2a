//! Test helpers: the torchvision parity fixture, generated on demand by `parity/make_fixture.py`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tch::Tensor;

#[path = "../../../torch/src/python_env.rs"]
mod python;
pub use python::pipeline_python;

/// FNV-1a 64: a stable cache key for the fixture script.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Directory with the fixture files, generated once and cached under the cargo target directory
/// keyed by a hash of the script. Panics with instructions when Python or torchvision is missing.
pub fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("parity/make_fixture.py");
        let source = std::fs::read(&script).unwrap_or_else(|e| panic!("{}: {e}", script.display()));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("midog-model-parity-{:016x}", fnv1a(&source)));
        if dir.join("complete").exists() {
            return dir;
        }
        let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let python = pipeline_python();
        let hint = "the parity tests need the pipeline's Python environment with torch 2.11.0 and torchvision \
                    0.26.0: install it with `bin/install-python-env --extras`, or point PIPELINE_PYTHON at a \
                    Python that has both";
        let out = Command::new(&python).arg(&script).arg(&tmp).output().unwrap_or_else(|e| {
            panic!("parity fixture: cannot run {} ({e}); {hint}", python.display());
        });
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&tmp);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
            panic!(
                "parity fixture: `{} {}` failed ({}); {hint}\n{}",
                python.display(),
                script.display(),
                out.status,
                tail.join("\n")
            );
        }
        std::fs::write(tmp.join("complete"), &out.stdout).expect("write fixture marker");
        if std::fs::rename(&tmp, &dir).is_err() {
            // another test process finished first: use its copy
            let _ = std::fs::remove_dir_all(&tmp);
            assert!(dir.join("complete").exists(), "parity fixture: cannot publish {}", dir.display());
        }
        dir
    })
}

/// Normwise relative error `max|a − b| / max|b|` (f64).
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    if b.numel() == 0 {
        return 0.0;
    }
    let a = a.to_kind(tch::Kind::Double);
    let b = b.to_kind(tch::Kind::Double);
    let diff = f64::try_from((&a - &b).abs().max()).unwrap();
    let scale = f64::try_from(b.abs().max()).unwrap();
    if scale == 0.0 { diff } else { diff / scale }
}

/// Relative L2 error `‖a − b‖₂ / ‖b‖₂`.
pub fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    let a = a.to_kind(tch::Kind::Double);
    let b = b.to_kind(tch::Kind::Double);
    let diff = f64::try_from((&a - &b).square().sum(tch::Kind::Double).sqrt()).unwrap();
    let scale = f64::try_from(b.square().sum(tch::Kind::Double).sqrt()).unwrap();
    if scale == 0.0 { diff } else { diff / scale }
}
