//! `pipeline synth`: write a synthetic MIDOG-like dataset (the same generator as the dataset
//! stage's `synthetic = { … }`): MIDOG 2021-like, or with `--tumor-types` a multi-domain set in
//! the MIDOG++ layout.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use midog_synth::{Compression, MultiDomain, SynthConfig, TumourProfile};

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
    /// Comma-separated scanners of the breast cancer images (default XR,S360,CS2,GT450).
    #[arg(long, value_delimiter = ',')]
    pub scanners: Vec<String>,
    /// A multi-domain set in the MIDOG++ layout (MIDOG++.json + datasets_xvalidation.csv) with
    /// these tumour types, comma-separated, or `all` for the seven of MIDOG++.
    #[arg(long, value_delimiter = ',')]
    pub tumor_types: Vec<String>,
    /// Images of each tumour type other than breast cancer (breast: --images-per-scanner per scanner).
    #[arg(long, default_value_t = 10)]
    pub images_per_tumor_type: u32,
    /// Share of each tumour type's labelled images the table marks `test`.
    #[arg(long, default_value_t = 0.22)]
    pub test_fraction: f64,
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
    if !a.tumor_types.is_empty() {
        let all = a.tumor_types.len() == 1 && a.tumor_types[0].eq_ignore_ascii_case("all");
        cfg.multi_domain = Some(MultiDomain {
            tumour_types: if all {
                TumourProfile::all().iter().map(|t| t.name.to_string()).collect()
            } else {
                a.tumor_types.iter().map(|t| t.trim().to_string()).collect()
            },
            images_per_tumour_type: a.images_per_tumor_type,
            test_fraction: a.test_fraction,
        });
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
    for t in &summary.per_tumour_type {
        println!(
            "  {}: {} images, {} mitotic figures, {} marked test",
            t.tumour_type, t.images, t.mitoses, t.test_images
        );
    }
    Ok(())
}
