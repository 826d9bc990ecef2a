//! Renders the pictures of docs/synthetic-data.md: per scanner a 512 × 384 px view of a
//! synthetic image with its boxes (green: mitotic figure, orange: hard negative; grey: unlabelled
//! look-alike, not in MIDOG.json), and a gallery of figures by phase and of hard negatives.
//!
//! `cargo run --release -p midog-synth --example render_docs -- [OUT_DIR]` (default docs/img)

use std::path::{Path, PathBuf};

use midog_synth::dataset::render_image;
use midog_synth::{Compression, ImageScene, RgbImage, ScannerProfile, TruthClass, plan_images};

const VIEW_W: usize = 512;
const VIEW_H: usize = 384;

fn crop(img: &RgbImage, x0: usize, y0: usize, w: usize, h: usize) -> Vec<u8> {
    img.crop(x0 as u32, y0 as u32, w as u32, h as u32).pixels
}

fn draw_box(px: &mut [u8], w: usize, h: usize, cx: f64, cy: f64, half: f64, colour: [u8; 3]) {
    let (x0, y0, x1, y1) = ((cx - half) as i64, (cy - half) as i64, (cx + half) as i64, (cy + half) as i64);
    for t in 0..2 {
        for x in x0..=x1 {
            for y in [y0 + t, y1 - t] {
                put(px, w, h, x, y, colour);
            }
        }
        for y in y0..=y1 {
            for x in [x0 + t, x1 - t] {
                put(px, w, h, x, y, colour);
            }
        }
    }
}

fn put(px: &mut [u8], w: usize, h: usize, x: i64, y: i64, c: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
        let i = (y as usize * w + x as usize) * 3;
        px[i..i + 3].copy_from_slice(&c);
    }
}

fn save_png(path: &Path, w: usize, h: usize, px: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(px)?;
    println!("wrote {}", path.display());
    Ok(())
}

fn colour(class: TruthClass) -> [u8; 3] {
    match class {
        TruthClass::Mitosis => [0, 200, 0],
        TruthClass::HardNegative => [255, 140, 0],
        TruthClass::Lookalike => [150, 150, 150],
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("docs/img"));
    std::fs::create_dir_all(&out)?;
    let jpeg = Compression::Jpeg { quality: 85 };
    let mut gallery: Vec<(String, Vec<u8>)> = Vec::new();
    const G: usize = 96;
    for p in ScannerProfile::all() {
        // Of three images, the view with the most labelled cells.
        let (mut best, mut best_n, mut best_img) = ((0, 0), 0, None);
        for plan in plan_images(std::slice::from_ref(&p), 3, 0.12, 2021, 150.0) {
            let scene = ImageScene::build(&plan);
            let img = render_image(&scene, 256, jpeg)?;
            for y0 in (0..=img.height as usize - VIEW_H).step_by(32) {
                for x0 in (0..=img.width as usize - VIEW_W).step_by(32) {
                    let n = scene
                        .cells
                        .iter()
                        .filter(|c| c.truth.class != TruthClass::Lookalike)
                        .filter(|c| {
                            let (x, y) = (c.truth.x - x0 as f64, c.truth.y - y0 as f64);
                            x > 25.0 && y > 25.0 && x < VIEW_W as f64 - 25.0 && y < VIEW_H as f64 - 25.0
                        })
                        .count();
                    if n > best_n {
                        (best, best_n) = ((x0, y0), n);
                        best_img = Some((scene.clone(), img.clone()));
                    }
                }
            }
        }
        let Some((scene, img)) = best_img else { continue };
        let mut view = crop(&img, best.0, best.1, VIEW_W, VIEW_H);
        for c in &scene.cells {
            let (x, y) = (c.truth.x - best.0 as f64, c.truth.y - best.1 as f64);
            draw_box(&mut view, VIEW_W, VIEW_H, x, y, 25.0, colour(c.truth.class));
        }
        save_png(&out.join(format!("synth-{}.png", p.name)), VIEW_W, VIEW_H, &view)?;
        if p.name == "XR" {
            let mut seen = std::collections::BTreeSet::new();
            let plans = plan_images(std::slice::from_ref(&p), 6, 0.12, 7, 150.0);
            for plan in plans {
                let scene = ImageScene::build(&plan);
                let img = render_image(&scene, 256, jpeg)?;
                for c in &scene.cells {
                    let key = (c.truth.class == TruthClass::Mitosis, c.truth.kind.clone());
                    let (x, y) = (c.truth.x as i64 - G as i64 / 2, c.truth.y as i64 - G as i64 / 2);
                    if c.truth.class == TruthClass::Lookalike
                        || seen.contains(&key)
                        || x < 0
                        || y < 0
                        || x + G as i64 > img.width as i64
                        || y + G as i64 > img.height as i64
                    {
                        continue;
                    }
                    seen.insert(key);
                    gallery.push((c.truth.kind.clone(), crop(&img, x as usize, y as usize, G, G)));
                    gallery.sort_by_key(|(k, _)| k.clone());
                }
            }
        }
    }
    // Gallery: mitotic phases on top, hard negatives below (order of `gallery` is by kind name).
    let phases = [
        "prophase",
        "prometaphase",
        "metaphase",
        "metaphase_ring",
        "anaphase",
        "telophase",
        "atypical_tripolar",
        "atypical_lagging",
        "atypical_asymmetric",
    ];
    let negs = ["pyknotic", "apoptotic", "hyperchromatic", "lymphocyte_cluster", "dark_spindle"];
    let cols = phases.len();
    let (gw, gh) = (cols * G, 2 * G);
    let mut sheet = vec![255u8; gw * gh * 3];
    for (row, names) in [&phases[..], &negs[..]].iter().enumerate() {
        for (col, name) in names.iter().enumerate() {
            let Some((_, px)) = gallery.iter().find(|(k, _)| k == name) else { continue };
            for y in 0..G {
                let d = ((row * G + y) * gw + col * G) * 3;
                sheet[d..d + G * 3].copy_from_slice(&px[y * G * 3..(y + 1) * G * 3]);
            }
            println!("gallery row {row} column {col}: {name}");
        }
    }
    save_png(&out.join("synth-gallery.png"), gw, gh, &sheet)?;
    Ok(())
}
