//! `pipeline detect` equals torchvision's RetinaNet on the same weights.
//!
//! The fixture (`tests/fixtures/detect/`, written by its `make_fixture.py`) holds a 768 × 576 image
//! (4 tiles of 512 px on `pipeline detect`'s grid), the model TOML, torchvision's detections per tile
//! and the final MIDOG points, and the weights as a *recipe* (`weights.json`: every tensor of the
//! torchvision state dict as a seeded splitmix64 stream with an offset, a scale and a checksum), because
//! the 80 MB of ResNet-18 RetinaNet weights are too big to commit. This test rebuilds the safetensors
//! file from the recipe in Rust, bit for bit what the Python script loads into torchvision, runs the
//! real `pipeline-torch detect` and compares:
//!
//! * the raw per-tile boxes and scores (`--raw-boxes`: the model's post-processed detections of each
//!   tile, shifted to image coordinates and clamped) with torchvision's, and
//! * the final points of the official MIDOG JSON (`-o`, after per-tile IoU NMS 0.4 and the 25 px
//!   centre NMS) with the script's reference implementation of the same two NMS levels.
//!
//! Tolerance: 1e-4 relative, normwise as in midog-model's parity tests (`max |ours − theirs| /
//! max |theirs|` over all box coordinates, all scores, all point coordinates), and every single
//! score within 1e-4 of its own value. The differences come from the folded frozen batch norm
//! (~1e-6); the fixture's `margins` show that no threshold decision (score 0.05, NMS IoU 0.5/0.4,
//! 25 px) is that close, so the sets of detections must be identical.
//!
//! The second test reruns the script in its `check` mode: torchvision (through
//! `$PIPELINE_PYTHON`) must still produce the committed expectation from the same recipe, so the
//! fixture cannot silently drift from what torchvision computes.
//!
//! The binary is `$PIPELINE_TORCH_BIN` when set, else the one cargo built for this test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tch::Tensor;

#[path = "../src/python_env.rs"]
mod python;
use python::pipeline_python;

const TOL: f64 = 1e-4;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/detect")
}

fn pipeline_torch() -> PathBuf {
    std::env::var_os("PIPELINE_TORCH_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pipeline-torch")))
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ------------------------------------------------------------------------------------------------
// The weights recipe (make_fixture.py `generate` / `checksum`).

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn splitmix64(key: u64, counter: u64) -> u64 {
    let mut z = key.wrapping_add(counter.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `float32(offset + scale · (2u − 1))` with `u = (z >> 11) · 2⁻⁵³`: every step is exact or one
/// correctly rounded f64 operation in the same order as numpy, so the values are bit-identical.
fn generate(name: &str, n: usize, offset: f64, scale: f64, seed: u64) -> Vec<f32> {
    let key = fnv1a64(name.as_bytes()) ^ seed;
    (1..=n as u64)
        .map(|i| {
            let u = (splitmix64(key, i) >> 11) as f64 * 2f64.powi(-53);
            (offset + scale * (2.0 * u - 1.0)) as f32
        })
        .collect()
}

fn checksum(v: &[f32]) -> u64 {
    v.iter().enumerate().fold(0u64, |acc, (i, x)| acc.wrapping_add((x.to_bits() as u64).wrapping_mul(2 * i as u64 + 1)))
}

fn f64_from_hex(s: &str) -> f64 {
    f64::from_bits(u64::from_str_radix(s, 16).unwrap_or_else(|e| panic!("bad f64 bits {s:?}: {e}")))
}

/// Writes the torchvision state dict of `weights.json` as safetensors (torchvision's names).
fn write_weights(recipe: &Path, out: &Path) {
    let recipe = read_json(recipe);
    let seed = recipe["seed"].as_u64().expect("seed");
    let mut tensors = Vec::new();
    for t in recipe["tensors"].as_array().expect("tensors") {
        let name = t["name"].as_str().expect("name");
        let shape: Vec<i64> = t["shape"].as_array().expect("shape").iter().map(|d| d.as_i64().expect("dim")).collect();
        let n = shape.iter().product::<i64>() as usize;
        let (offset, scale) =
            (f64_from_hex(t["offset_bits"].as_str().unwrap()), f64_from_hex(t["scale_bits"].as_str().unwrap()));
        let values = generate(name, n, offset, scale, seed);
        let sum = format!("{:016x}", checksum(&values));
        assert_eq!(sum, t["checksum"].as_str().unwrap(), "{name}: the Rust generator disagrees with make_fixture.py's");
        tensors.push((name.to_string(), Tensor::from_slice(&values).view(shape.as_slice())));
    }
    midog_model::weights::write_safetensors(out, &tensors, HashMap::new()).unwrap();
}

// ------------------------------------------------------------------------------------------------
// Comparison helpers.

/// Normwise relative error of matched pairs: `max |a − b| / max |b|`.
fn normwise(pairs: &[(f64, f64)]) -> f64 {
    let diff = pairs.iter().map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let scale = pairs.iter().map(|(_, b)| b.abs()).fold(0.0, f64::max);
    if scale > 0.0 { diff / scale } else { diff }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

/// A detection or point: (tile, coordinates, score).
type Item = (u64, Vec<f64>, f64);

/// Pairs every expected item with the unused item of ours (same tile) that is closest in
/// coordinates; the order within a tile may differ where two scores are within float noise.
fn match_by_position<'a>(ours: &'a [Item], theirs: &[Item]) -> Vec<(&'a Item, usize)> {
    let mut used = vec![false; ours.len()];
    let mut out = Vec::new();
    for (j, (group, coords, _)) in theirs.iter().enumerate() {
        let best = ours
            .iter()
            .enumerate()
            .filter(|(i, o)| !used[*i] && o.0 == *group)
            .map(|(i, o)| (i, o.1.iter().zip(coords).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let (i, _) = best.unwrap_or_else(|| panic!("expected item {j} (group {group}, {coords:?}) has no counterpart"));
        used[i] = true;
        out.push((&ours[i], j));
    }
    out
}

#[test]
fn detect_matches_torchvision_on_the_same_weights() {
    let fx = fixture_dir();
    let expected = read_json(&fx.join("expected.json"));
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.safetensors");
    write_weights(&fx.join("weights.json"), &weights);

    let image_name = expected["image"].as_str().unwrap();
    let (dets, raw) = (dir.path().join("dets.json"), dir.path().join("raw.json"));
    let num = |k: &str| expected[k].as_f64().unwrap().to_string();
    let out = Command::new(pipeline_torch())
        .arg("detect")
        .arg("--checkpoint")
        .arg(&weights)
        .arg("--model")
        .arg(fx.join("model.toml"))
        .arg(fx.join(image_name))
        .arg("-o")
        .arg(&dets)
        .arg("--raw-boxes")
        .arg(&raw)
        .args(["--device", "cpu", "--precision", "fp32"])
        .args(["--tile-size", &num("tile_size"), "--overlap", &num("overlap"), "--min-score", &num("min_score")])
        .args(["--iou", &expected["nms"]["iou"].as_f64().unwrap().to_string()])
        .args(["--radius-px", &expected["nms"]["radius_px"].as_f64().unwrap().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", pipeline_torch().display()));
    assert!(
        out.status.success(),
        "pipeline-torch detect failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Raw per-tile detections.
    let item = |v: &Value| (v["tile"].as_u64().unwrap(), floats(&v["box"]), v["score"].as_f64().unwrap());
    let ours: Vec<_> =
        read_json(&raw)[image_name].as_array().expect("raw boxes of the image").iter().map(item).collect();
    let theirs: Vec<_> = expected["raw"].as_array().unwrap().iter().map(item).collect();
    let per_tile = |v: &[Item]| {
        let mut c = std::collections::BTreeMap::<u64, usize>::new();
        v.iter().for_each(|d| *c.entry(d.0).or_default() += 1);
        c
    };
    assert_eq!(per_tile(&ours), per_tile(&theirs), "detections per tile (ours, torchvision)");
    let pairs = match_by_position(&ours, &theirs);
    let coords: Vec<(f64, f64)> =
        pairs.iter().flat_map(|(o, j)| o.1.iter().copied().zip(theirs[*j].1.iter().copied())).collect();
    let scores: Vec<(f64, f64)> = pairs.iter().map(|(o, j)| (o.2, theirs[*j].2)).collect();
    let (box_err, score_err) = (normwise(&coords), normwise(&scores));
    let worst_score = scores.iter().map(|(a, b)| (a - b).abs() / b.abs()).fold(0.0, f64::max);
    println!(
        "raw: {} detections in {} tiles; boxes max rel err {box_err:.2e}, scores {score_err:.2e} (worst single {worst_score:.2e})",
        ours.len(),
        expected["tiles"].as_array().unwrap().len()
    );
    assert!(box_err <= TOL, "raw boxes: relative error {box_err:.3e} > {TOL:e}");
    assert!(
        score_err <= TOL && worst_score <= TOL,
        "raw scores: relative error {score_err:.3e} / {worst_score:.3e} > {TOL:e}"
    );

    // Final MIDOG points.
    let file = read_json(&dets);
    let entry = &file[image_name];
    assert_eq!(entry["type"], "Multiple points");
    assert_eq!(entry["version"]["major"], 1);
    let point = |v: &Value| {
        assert_eq!(v["name"], "mitotic figure");
        let p = floats(&v["point"]);
        assert_eq!(p.len(), 3);
        (0u64, p, v["probability"].as_f64().unwrap())
    };
    let ours: Vec<_> = entry["points"].as_array().expect("points").iter().map(point).collect();
    let theirs: Vec<_> = expected["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (0u64, floats(&v["point"]), v["probability"].as_f64().unwrap()))
        .collect();
    assert_eq!(ours.len(), theirs.len(), "final points (ours, reference)");
    let pairs = match_by_position(&ours, &theirs);
    let coords: Vec<(f64, f64)> =
        pairs.iter().flat_map(|(o, j)| o.1.iter().copied().zip(theirs[*j].1.iter().copied())).collect();
    let probs: Vec<(f64, f64)> = pairs.iter().map(|(o, j)| (o.2, theirs[*j].2)).collect();
    let (point_err, prob_err) = (normwise(&coords), normwise(&probs));
    println!("points: {}; position max rel err {point_err:.2e}, probability {prob_err:.2e}", ours.len());
    assert!(
        point_err <= TOL && prob_err <= TOL,
        "final points: relative error {point_err:.3e} / {prob_err:.3e} > {TOL:e}"
    );
    // Same order as the reference (descending probability), checked where probabilities are distinct.
    for w in ours.windows(2) {
        assert!(w[0].2 >= w[1].2, "points are not sorted by probability");
    }
}

#[test]
fn the_fixture_is_what_torchvision_computes() {
    let python = pipeline_python();
    let script = fixture_dir().join("make_fixture.py");
    let hint = "this test needs the pipeline's Python environment with torch 2.11.0, torchvision 0.26.0, numpy, \
                tifffile and safetensors: install it with `bin/install-python-env --extras` (bin/test does), or \
                point PIPELINE_PYTHON at a Python that has them";
    let out = Command::new(&python)
        .arg(&script)
        .arg("check")
        .arg(fixture_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); {hint}", python.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("ModuleNotFoundError") {
        panic!("{} lacks a module:\n{stderr}\n{hint}", python.display());
    }
    assert!(
        out.status.success(),
        "`{} {} check` failed ({}):\n{}{stderr}",
        python.display(),
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
}
