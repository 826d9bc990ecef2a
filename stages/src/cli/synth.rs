//! `pipeline synth`: write a synthetic MIDOG-like dataset (the same generator as the dataset
//! stage's `synthetic = { … }`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use midog_synth::{Compression, SynthConfig};

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output directory (MIDOG.json + NNN.tiff).
    pub out: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub images_per_scanner: u32,
    /// Field of view relative to real images (cells keep their real size).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    #[arg(long, default_value_t = 2021)]
    pub seed: u64,
    /// Multiplier of the real per-area rates of mitoses and hard negatives.
    #[arg(long, default_value_t = 1.0)]
    pub density: f64,
    /// jpeg (as real MIDOG files), deflate (lossless) or none (uncompressed).
    #[arg(long, default_value = "jpeg")]
    pub compression: String,
    /// Comma-separated scanners (default XR,S360,CS2,GT450).
    #[arg(long, value_delimiter = ',')]
    pub scanners: Vec<String>,
}

pub fn run(a: SynthArgs) -> Result<()> {
    let compression = match a.compression.as_str() {
        "jpeg" => Compression::Jpeg { quality: 85 },
        "deflate" => Compression::Deflate,
        "none" => Compression::None,
        other => bail!("--compression {other}: use jpeg, deflate or none"),
    };
    let mut cfg = SynthConfig {
        images_per_scanner: a.images_per_scanner,
        scale: a.scale,
        seed: a.seed,
        compression,
        density: a.density,
        ..SynthConfig::default()
    };
    if !a.scanners.is_empty() {
        cfg.scanners = a.scanners.clone();
    }
    std::fs::create_dir_all(&a.out)?;
    let start = std::time::Instant::now();
    let summary = midog_synth::generate(&a.out, &cfg, &|done, total| {
        eprint!("\r{done}/{total} images");
    })?;
    eprintln!();
    println!(
        "wrote {} images ({} mitotic figures, {} hard negatives) to {} in {:.1} s",
        summary.images,
        summary.mitoses,
        summary.hard_negatives,
        a.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
