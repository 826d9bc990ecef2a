//! Patch-loader throughput on real files, until `pipeline bench loader` calls the same function:
//!
//!     cargo run --release -p midog-data --example bench_loader -- [--batches N] [--threads 1,2] \
//!         [--cache-mib N] [--no-augment | --only flips|stain|scale|bc] FILE.tiff...

use std::path::PathBuf;

use midog_data::loader::{AugmentConfig, LoaderBenchConfig, bench_loader};

fn main() {
    let mut config = LoaderBenchConfig::default();
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--batches" => config.batches = args.next().and_then(|v| v.parse().ok()).expect("--batches N"),
            "--threads" => {
                let list = args.next().expect("--threads 1,2");
                config.threads = list.split(',').map(|t| t.parse().expect("thread count")).collect();
            }
            "--no-augment" => config.augment = AugmentConfig::NONE,
            "--cache-mib" => {
                config.cache_bytes = args.next().and_then(|v| v.parse::<usize>().ok()).expect("--cache-mib N") << 20
            }
            "--only" => {
                let what = args.next().expect("--only flips|stain|scale|bc");
                let mut a = AugmentConfig::NONE;
                match what.as_str() {
                    "flips" => (a.flips, a.rot90) = (true, true),
                    "stain" => a.stain_jitter = 0.05,
                    "scale" => a.scale_jitter = 0.1,
                    _ => (a.brightness, a.contrast) = (0.1, 0.1),
                }
                config.augment = a;
            }
            _ => files.push(PathBuf::from(arg)),
        }
    }
    if files.is_empty() {
        eprintln!(
            "usage: bench_loader [--batches N] [--threads 1,2] [--cache-mib N] \
             [--no-augment | --only flips|stain|scale|bc] FILE.tiff..."
        );
        std::process::exit(2);
    }
    println!(
        "{} px patches, batches of {}, {} batches, augment {:?}",
        config.patch_size, config.batch_size, config.batches, config.augment
    );
    match bench_loader(&files, &config) {
        Ok(results) => results.iter().for_each(|r| println!("{r}")),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
