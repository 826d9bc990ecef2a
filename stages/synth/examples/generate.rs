//! Writes a synthetic MIDOG-like dataset.
//!
//! `cargo run --release -p midog-synth --example generate -- OUT_DIR [--scale 0.1] [--images 10]
//! [--density 1] [--seed 2021] [--deflate] [--quality 85]`

use std::time::Instant;

use midog_synth::{Compression, SynthConfig, generate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(out) = args.get(1).filter(|a| !a.starts_with("--")) else {
        eprintln!(
            "usage: generate OUT_DIR [--scale S] [--images N] [--density D] [--seed S] [--deflate] [--quality Q]"
        );
        std::process::exit(2);
    };
    let num = |n: &str, d: f64| {
        args.iter().position(|a| a == n).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(d)
    };
    let config = SynthConfig {
        images_per_scanner: num("--images", 10.0) as u32,
        scale: num("--scale", 0.1),
        seed: num("--seed", 2021.0) as u64,
        density: num("--density", 1.0),
        compression: if args.iter().any(|a| a == "--deflate") {
            Compression::Deflate
        } else {
            Compression::Jpeg { quality: num("--quality", 85.0) as u8 }
        },
        ..SynthConfig::default()
    };
    let t = Instant::now();
    let s = generate(std::path::Path::new(out), &config, &|done, total| eprint!("\r{done}/{total} images"))?;
    eprintln!();
    println!("{}", serde_json::to_string_pretty(&s)?);
    println!("{:.2} s", t.elapsed().as_secs_f64());
    Ok(())
}
