//! Prints the appearance of synthetic mitotic figures next to the real MIDOG measurements, and
//! (with `--fit N`) runs N rounds of a multiplicative stain fit, printing the fitted stain
//! optical densities to paste into `scanner_profile.rs`.
//!
//! `cargo run --release -p midog-synth --example calibrate -- [--scale 0.2] [--images 6]
//! [--density 40] [--seed 1] [--fit 0]`

use std::time::Instant;

use rayon::prelude::*;

use midog_synth::appearance::{comparison_table, real_midog_appearance};
use midog_synth::dataset::render_image;
use midog_synth::{
    AppearanceStats, Compression, ImageScene, ScannerProfile, TruthClass, appearance_stats, crop_stats, plan_images,
};

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn measure(p: &ScannerProfile, images: u32, scale: f64, seed: u64, density: f64) -> AppearanceStats {
    let plans = plan_images(std::slice::from_ref(p), images, scale, seed, density);
    let crops: Vec<_> = plans
        .par_iter()
        .flat_map_iter(|plan| {
            let scene = ImageScene::build(plan);
            let img = render_image(&scene, 256, Compression::Jpeg { quality: 85 }).expect("render");
            scene
                .cells
                .iter()
                .filter(|c| c.truth.class == TruthClass::Mitosis)
                .filter_map(|c| crop_stats(&img, c.truth.x, c.truth.y))
                .collect::<Vec<_>>()
        })
        .collect();
    appearance_stats(&crops, p.um_per_px)
}

fn main() {
    let scale = arg("--scale", 0.2);
    let images = arg("--images", 6.0) as u32;
    let density = arg("--density", 40.0);
    let seed = arg("--seed", 1.0) as u64;
    let fit = arg("--fit", 0.0) as usize;
    let t = Instant::now();
    let mut profiles = ScannerProfile::all();
    for round in 0..=fit {
        let rows: Vec<_> = profiles
            .iter()
            .map(|p| (p.name.to_string(), measure(p, images, scale, seed, density), real_midog_appearance(p.name)))
            .collect();
        if round == fit {
            println!("{}", comparison_table(&rows));
            break;
        }
        for (p, (_, s, r)) in profiles.iter_mut().zip(&rows) {
            let Some(r) = r else { continue };
            // Object colour is set by haematoxylin, the ring by eosin: scale each stain's OD per
            // channel by the ratio of real to synthetic optical density.
            for c in 0..3 {
                let w = p.white[c] as f64;
                let od = |v: f64| (w / v.max(1.0)).ln().max(0.02);
                let fh = (od(r.object_rgb[c]) / od(s.object_rgb[c])).clamp(0.7, 1.4);
                let fe = (od(r.ring_rgb[c]) / od(s.ring_rgb[c])).clamp(0.7, 1.4);
                p.hematoxylin_od[c] *= fh.powf(0.8) as f32;
                p.eosin_od[c] *= fe.powf(0.8) as f32;
            }
            println!(
                "round {round} {}: hematoxylin_od: [{:.3}, {:.3}, {:.3}], eosin_od: [{:.3}, {:.3}, {:.3}]",
                p.name,
                p.hematoxylin_od[0],
                p.hematoxylin_od[1],
                p.hematoxylin_od[2],
                p.eosin_od[0],
                p.eosin_od[1],
                p.eosin_od[2]
            );
        }
    }
    eprintln!("{:.1} s", t.elapsed().as_secs_f64());
}
