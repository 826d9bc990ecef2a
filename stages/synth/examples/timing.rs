//! Times the rendering of one image of each scanner on one thread (CPU seconds per megapixel),
//! the yardstick for "a full-size image in a few seconds per core".
//!
//! `cargo run --release -p midog-synth --example timing -- [--scale 0.25]`

use std::time::Instant;

use midog_synth::dataset::render_tiles;
use midog_synth::{Compression, ImageScene, ScannerProfile, plan_images};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scale: f64 = args
        .iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.25);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("thread pool");
    pool.install(|| {
        for p in ScannerProfile::all() {
            let plan = plan_images(std::slice::from_ref(&p), 1, scale, 1, 1.0).remove(0);
            let t = Instant::now();
            let scene = ImageScene::build(&plan);
            let tiles = render_tiles(&scene, 256, Compression::Jpeg { quality: 85 }).expect("render");
            let s = t.elapsed().as_secs_f64();
            let mpx = plan.width as f64 * plan.height as f64 / 1e6;
            let full = p.full_size.0 as f64 * p.full_size.1 as f64 / 1e6;
            println!(
                "{:5} {}×{} ({:.1} Mpx, {} KiB): {:.2} s, {:.3} s/Mpx → full size ≈ {:.1} s on one core",
                p.name,
                plan.width,
                plan.height,
                mpx,
                tiles.iter().map(|t| t.len()).sum::<usize>() / 1024,
                s,
                s / mpx,
                s / mpx * full
            );
        }
    });
}
