//! Generates a small labelled dataset (or uses an existing one), tunes the non-learned blob
//! detector on the even-numbered images and scores it on the odd-numbered ones.
//!
//! `cargo run --release -p midog-synth --example baseline_f1 -- [--dir DIR] [--scale 0.2]
//! [--images 8] [--density 40] [--seed 7]`

use std::path::PathBuf;
use std::time::Instant;

use midog_eval::ScoreThreshold;
use midog_synth::baseline::{BlobDetector, SearchGrid, load_labelled};
use midog_synth::{SynthConfig, generate};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let num = |n: &str, d: f64| arg(n).and_then(|v| v.parse().ok()).unwrap_or(d);
    let tmp = tempfile::tempdir()?;
    let dir = match arg("--dir") {
        Some(d) => PathBuf::from(d),
        None => {
            let config = SynthConfig {
                images_per_scanner: num("--images", 8.0) as u32,
                scale: num("--scale", 0.2),
                seed: num("--seed", 7.0) as u64,
                density: num("--density", 40.0),
                scanners: vec!["XR".into(), "S360".into(), "CS2".into()],
                ..SynthConfig::default()
            };
            let t = Instant::now();
            let s = generate(tmp.path(), &config, &|_, _| {})?;
            eprintln!(
                "generated {} images ({} mitoses, {} hard negatives, {} unlabelled look-alikes) in {:.1} s",
                s.images,
                s.mitoses,
                s.hard_negatives,
                s.lookalikes,
                t.elapsed().as_secs_f64()
            );
            tmp.path().to_path_buf()
        }
    };
    let train = load_labelled(&dir, &|id| id % 2 == 0)?;
    let test = load_labelled(&dir, &|id| id % 2 == 1)?;
    let t = Instant::now();
    let tuned = BlobDetector::tune(&train, &SearchGrid::default())?;
    let test_counts = tuned.detector.evaluate(&test, tuned.score_threshold());
    let test_all = tuned.detector.evaluate(&test, ScoreThreshold::KeepAll);
    println!(
        "tuned parameters: {:?}, score > {:.3} ({:.1} s)",
        tuned.detector,
        tuned.train.threshold,
        t.elapsed().as_secs_f64()
    );
    println!("train ({} images): {:?}  F1 {:.3}", train.len(), tuned.train.counts, tuned.train.f1);
    println!("test  ({} images): {:?}  F1 {:.3}", test.len(), test_counts, test_counts.f1());
    println!("test, every detection: {:?}  F1 {:.3}", test_all, test_all.f1());
    Ok(())
}
