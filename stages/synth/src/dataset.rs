//! The dataset as a whole: plans the images, renders and writes them in parallel (images and
//! tiles in parallel, yet bit-identical whatever the thread count, because every tile is a pure
//! function of its scene), and writes MIDOG.json (GT450 unannotated, as in MIDOG),
//! `heldout_labels.json` (the unlabelled scanners' annotations, in the MIDOG.json layout: the
//! held-out test domain, which the dataset stage never hands to training, validation or
//! sampling) and `synthetic_truth.json` with every special cell, labelled or not, for diagnostics.

use std::path::Path;
use std::sync::mpsc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use midog_data::{AnnotationEntry, Category, ImageEntry, MidogJson};

use crate::config::{Compression, SynthConfig};
use crate::error::SynthError;
use crate::render::render_region;
use crate::rgb_image::RgbImage;
use crate::scene::{ImagePlan, ImageScene, TruthClass, TruthObject, plan_images};
use crate::tiff_writer::{TiffLayout, write_tiled_tiff};
use crate::tile_codec::{decode_tile, encode_tile};

/// Side of every MIDOG box (px).
pub const BOX_SIDE_PX: f64 = 50.0;

/// The held-out labels of the unlabelled scanners (MIDOG.json layout, those images only).
pub const HELDOUT_LABELS_FILE: &str = "heldout_labels.json";

/// Counts of what was written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SynthSummary {
    pub images: usize,
    pub mitoses: usize,
    pub hard_negatives: usize,
    pub lookalikes: usize,
    pub bytes: u64,
    pub per_scanner: Vec<ScannerSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScannerSummary {
    pub scanner: String,
    pub images: usize,
    pub mitoses: usize,
    pub hard_negatives: usize,
    /// Whether MIDOG.json carries these annotations (false for GT450).
    pub labelled: bool,
}

/// Per-image record of `synthetic_truth.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthImage {
    pub id: u32,
    pub file_name: String,
    pub scanner: String,
    pub width: u32,
    pub height: u32,
    pub um_per_px: f64,
    pub objects: Vec<TruthObject>,
}

/// `synthetic_truth.json`: every special cell of every image, including GT450 and the unlabelled
/// look-alikes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticTruth {
    pub generator: String,
    pub config: SynthConfig,
    pub images: Vec<TruthImage>,
}

impl SyntheticTruth {
    pub fn load(path: &Path) -> Result<SyntheticTruth, SynthError> {
        let bytes = std::fs::read(path).map_err(|e| SynthError::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| SynthError::encode(path, format!("bad truth file: {e}")))
    }
}

pub fn generator_name() -> String {
    format!("midog-synth {}", env!("CARGO_PKG_VERSION"))
}

/// The compression of one scanner's tiles: JPEG quality at most the scanner's cap.
pub fn scanner_compression(compression: Compression, scanner: &crate::ScannerProfile) -> Compression {
    match compression {
        Compression::Jpeg { quality } => Compression::Jpeg { quality: quality.min(scanner.jpeg_quality_cap) },
        other => other,
    }
}

/// Renders and compresses every tile of an image, row-major (JPEG quality capped per scanner).
pub fn render_tiles(scene: &ImageScene, tile_size: u32, compression: Compression) -> Result<Vec<Vec<u8>>, String> {
    let compression = scanner_compression(compression, &scene.plan.scanner);
    let across = scene.plan.width.div_ceil(tile_size);
    let down = scene.plan.height.div_ceil(tile_size);
    (0..across * down)
        .into_par_iter()
        .map(|k| {
            let (tx, ty) = ((k % across) * tile_size, (k / across) * tile_size);
            let rgb = render_region(scene, tx as i64, ty as i64, tile_size as usize, tile_size as usize);
            encode_tile(&rgb, tile_size, compression)
        })
        .collect()
}

/// Renders an image in memory exactly as a reader of its file would see it (compressed and
/// decoded tile by tile), without touching the disk.
pub fn render_image(scene: &ImageScene, tile_size: u32, compression: Compression) -> Result<RgbImage, String> {
    let tiles = render_tiles(scene, tile_size, compression)?;
    let (w, h) = (scene.plan.width as usize, scene.plan.height as usize);
    let t = tile_size as usize;
    let across = w.div_ceil(t);
    let mut pixels = vec![0u8; w * h * 3];
    for (k, bytes) in tiles.iter().enumerate() {
        let rgb = decode_tile(bytes, compression, tile_size)?;
        let (tx, ty) = ((k % across) * t, (k / across) * t);
        let wcopy = t.min(w - tx);
        for row in 0..t.min(h - ty) {
            let dst = ((ty + row) * w + tx) * 3;
            pixels[dst..dst + wcopy * 3].copy_from_slice(&rgb[row * t * 3..(row * t + wcopy) * 3]);
        }
    }
    Ok(RgbImage { width: w as u32, height: h as u32, um_per_px: scene.plan.scanner.um_per_px, pixels })
}

fn write_image(out_dir: &Path, plan: &ImagePlan, config: &SynthConfig) -> Result<(TruthImage, u64), SynthError> {
    let path = out_dir.join(plan.file_name());
    let scene = ImageScene::build(plan);
    let tiles = render_tiles(&scene, config.tile_size, config.compression).map_err(|m| SynthError::encode(&path, m))?;
    let layout = TiffLayout {
        width: plan.width,
        height: plan.height,
        tile_size: config.tile_size,
        um_per_px: plan.scanner.um_per_px,
        compression: scanner_compression(config.compression, &plan.scanner),
        description: format!(
            "{} synthetic MIDOG-like H&E; scanner={} ({}); image id={}; seed={}; image seed={:#018x}; scale={}; density={}",
            generator_name(),
            plan.scanner.name,
            plan.scanner.model,
            plan.id,
            config.seed,
            plan.seed,
            config.scale,
            config.density
        ),
        software: generator_name(),
    };
    write_tiled_tiff(&path, &layout, &tiles)?;
    let bytes = tiles.iter().map(|t| t.len() as u64).sum();
    tracing::debug!(
        image = plan.id,
        scanner = plan.scanner.name,
        cells = scene.cells.len(),
        bytes,
        "synthetic image written"
    );
    let truth = TruthImage {
        id: plan.id,
        file_name: plan.file_name(),
        scanner: plan.scanner.name.to_string(),
        width: plan.width,
        height: plan.height,
        um_per_px: plan.scanner.um_per_px,
        objects: scene.cells.iter().map(|c| c.truth.clone()).collect(),
    };
    Ok((truth, bytes))
}

/// Generates a synthetic MIDOG-like dataset in `out_dir`: `NNN.tiff` per image, `MIDOG.json`
/// and `synthetic_truth.json`. `progress(done, total)` is called on the calling thread after
/// each image. The same config always gives the same bytes.
pub fn generate(
    out_dir: &Path,
    config: &SynthConfig,
    progress: &dyn Fn(usize, usize),
) -> Result<SynthSummary, SynthError> {
    let profiles = config.profiles()?;
    std::fs::create_dir_all(out_dir).map_err(|e| SynthError::io(out_dir, e))?;
    let plans = plan_images(&profiles, config.images_per_scanner, config.scale, config.seed, config.density);
    let total = plans.len();
    progress(0, total);
    let (tx, rx) = mpsc::channel::<()>();
    let results: Vec<Result<(TruthImage, u64), SynthError>> = std::thread::scope(|s| {
        let worker = s.spawn(move || {
            plans
                .par_iter()
                .map_with(tx, |tx, plan| {
                    let r = write_image(out_dir, plan, config);
                    let _ = tx.send(());
                    r
                })
                .collect::<Vec<_>>()
        });
        let mut done = 0;
        while rx.recv().is_ok() {
            done += 1;
            progress(done, total);
        }
        worker.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    let mut truth_images = Vec::with_capacity(results.len());
    let mut bytes = 0;
    for r in results {
        let (t, b) = r?;
        truth_images.push(t);
        bytes += b;
    }

    let midog = midog_json(&truth_images, config, &profiles, Labels::Labelled);
    let midog_path = out_dir.join("MIDOG.json");
    midog.save(&midog_path).map_err(|e| SynthError::Data { path: midog_path.clone(), source: e })?;
    if profiles.iter().any(|p| !p.labelled) {
        let heldout = midog_json(&truth_images, config, &profiles, Labels::HeldOut);
        let path = out_dir.join(HELDOUT_LABELS_FILE);
        heldout.save(&path).map_err(|e| SynthError::Data { path: path.clone(), source: e })?;
    }
    let truth = SyntheticTruth { generator: generator_name(), config: config.clone(), images: truth_images };
    let truth_path = out_dir.join("synthetic_truth.json");
    let json = serde_json::to_vec_pretty(&truth).map_err(|e| SynthError::encode(&truth_path, e.to_string()))?;
    std::fs::write(&truth_path, json).map_err(|e| SynthError::io(&truth_path, e))?;

    let mut summary = SynthSummary { images: truth.images.len(), bytes, ..SynthSummary::default() };
    for p in &profiles {
        let mut s = ScannerSummary { scanner: p.name.to_string(), labelled: p.labelled, ..ScannerSummary::default() };
        for img in truth.images.iter().filter(|i| i.scanner == p.name) {
            s.images += 1;
            s.mitoses += img.objects.iter().filter(|o| o.class == TruthClass::Mitosis).count();
            s.hard_negatives += img.objects.iter().filter(|o| o.class == TruthClass::HardNegative).count();
            summary.lookalikes += img.objects.iter().filter(|o| o.class == TruthClass::Lookalike).count();
        }
        summary.mitoses += s.mitoses;
        summary.hard_negatives += s.hard_negatives;
        summary.per_scanner.push(s);
    }
    Ok(summary)
}

/// Which images a MIDOG-layout file of the truth covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Labels {
    /// MIDOG.json: every image, annotations of the labelled scanners only.
    Labelled,
    /// heldout_labels.json: the unlabelled scanners' images with their annotations.
    HeldOut,
}

/// A MIDOG-layout file of the truth (50 × 50 px boxes centred on the cell).
fn midog_json(
    images: &[TruthImage],
    config: &SynthConfig,
    profiles: &[crate::ScannerProfile],
    which: Labels,
) -> MidogJson {
    let labelled_scanner = |img: &TruthImage| profiles.iter().any(|p| p.name == img.scanner && p.labelled);
    let images: Vec<&TruthImage> =
        images.iter().filter(|i| which == Labels::Labelled || !labelled_scanner(i)).collect();
    let mut annotations = Vec::new();
    for img in images.iter().copied() {
        if labelled_scanner(img) != (which == Labels::Labelled) {
            continue;
        }
        for o in &img.objects {
            let category = match o.class {
                TruthClass::Mitosis => Category::Mitosis,
                TruthClass::HardNegative => Category::Imposter,
                TruthClass::Lookalike => continue,
            };
            let h = BOX_SIDE_PX / 2.0;
            let mut extra = std::collections::BTreeMap::new();
            extra.insert("iscrowd".into(), serde_json::json!(0));
            extra.insert("area".into(), serde_json::json!(BOX_SIDE_PX * BOX_SIDE_PX));
            annotations.push(AnnotationEntry {
                id: annotations.len() as u64 + 1,
                image_id: img.id,
                category_id: category.id(),
                bbox: [o.x - h, o.y - h, o.x + h, o.y + h],
                extra,
            });
        }
    }
    let mut extra = std::collections::BTreeMap::new();
    extra.insert(
        "info".into(),
        serde_json::json!({
            "description": match which {
                Labels::Labelled => "synthetic MIDOG 2021-like dataset",
                Labels::HeldOut => "held-out labels of the unlabelled scanners of a synthetic MIDOG 2021-like dataset (test only)",
            },
            "generator": generator_name(),
            "seed": config.seed,
            "scale": config.scale,
            "density": config.density,
        }),
    );
    MidogJson {
        images: images
            .iter()
            .map(|i| ImageEntry {
                id: i.id,
                file_name: i.file_name.clone(),
                width: i.width,
                height: i.height,
                extra: Default::default(),
            })
            .collect(),
        annotations,
        categories: MidogJson::standard_categories(),
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn tiny(compression: Compression) -> SynthConfig {
        SynthConfig {
            images_per_scanner: 2,
            scale: 0.04,
            seed: 9,
            compression,
            density: 300.0,
            ..SynthConfig::default()
        }
    }

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_midog_layout_with_unannotated_gt450() {
        let dir = tempfile::tempdir().unwrap();
        let calls = AtomicUsize::new(0);
        let s = generate(dir.path(), &tiny(Compression::Jpeg { quality: 85 }), &|done, total| {
            assert!(done <= total && total == 8);
            calls.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 9);
        assert_eq!(s.images, 8);
        let m = MidogJson::load(&dir.path().join("MIDOG.json")).unwrap();
        assert!(m.check(&dir.path().join("MIDOG.json")).is_empty());
        let ids: Vec<u32> = m.images.iter().map(|i| i.id).collect();
        assert_eq!(ids, [1, 2, 51, 52, 101, 102, 151, 152]);
        assert_eq!(m.images[2].file_name, "051.tiff");
        assert!(m.annotations.iter().all(|a| a.image_id < 151), "GT450 must carry no annotations");
        assert!(m.annotations.iter().all(|a| a.bbox[2] - a.bbox[0] == 50.0 && a.bbox[3] - a.bbox[1] == 50.0));
        let labelled: usize = s.per_scanner.iter().filter(|p| p.labelled).map(|p| p.mitoses + p.hard_negatives).sum();
        assert_eq!(m.annotations.len(), labelled);
        let truth = SyntheticTruth::load(&dir.path().join("synthetic_truth.json")).unwrap();
        assert!(truth.images.iter().filter(|i| i.scanner == "GT450").all(|i| !i.objects.is_empty()));
        // The held-out file: GT450 only, its figures and hard negatives, in the MIDOG.json layout.
        let held = MidogJson::load(&dir.path().join(HELDOUT_LABELS_FILE)).unwrap();
        assert!(held.check(&dir.path().join(HELDOUT_LABELS_FILE)).is_empty());
        assert_eq!(held.images.iter().map(|i| i.id).collect::<Vec<_>>(), [151, 152]);
        let gt450 = s.per_scanner.iter().find(|p| p.scanner == "GT450").unwrap();
        assert_eq!(held.annotations.len(), gt450.mitoses + gt450.hard_negatives);
        assert!(gt450.mitoses > 0 && held.annotations.iter().all(|a| a.image_id >= 151));
        // GT450 tiles are compressed harder (quality 65 against 85): smaller per pixel.
        let per_px = |id: u32| {
            let img = m.images.iter().find(|i| i.id == id).unwrap();
            std::fs::metadata(dir.path().join(&img.file_name)).unwrap().len() as f64 / f64::from(img.width * img.height)
        };
        assert!(per_px(151) < per_px(1), "GT450 {} vs XR {} bytes/px", per_px(151), per_px(1));
        for img in &m.images {
            let rgb = RgbImage::read(&dir.path().join(&img.file_name)).unwrap();
            assert_eq!((rgb.width, rgb.height), (img.width, img.height));
        }
    }

    #[test]
    fn output_is_bit_identical_whatever_the_thread_count() {
        let config = SynthConfig { scanners: vec!["XR".into(), "CS2".into()], ..tiny(Compression::Deflate) };
        let run = |threads: usize| {
            let dir = tempfile::tempdir().unwrap();
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| generate(dir.path(), &config, &|_, _| {})).unwrap();
            files(dir.path())
        };
        let (one, three) = (run(1), run(3));
        assert_eq!(one.len(), 6);
        assert!(one == three, "thread count changed the output");
        let other_seed = {
            let dir = tempfile::tempdir().unwrap();
            generate(dir.path(), &SynthConfig { seed: 10, ..config.clone() }, &|_, _| {}).unwrap();
            files(dir.path())
        };
        assert!(one[0].1 != other_seed[0].1, "seed did not change the image");
    }

    #[test]
    fn file_pixels_equal_the_in_memory_render() {
        let dir = tempfile::tempdir().unwrap();
        let config = SynthConfig { scanners: vec!["S360".into()], images_per_scanner: 1, ..tiny(Compression::Deflate) };
        generate(dir.path(), &config, &|_, _| {}).unwrap();
        let plan = &plan_images(&config.profiles().unwrap(), 1, config.scale, config.seed, config.density)[0];
        let mem = render_image(&ImageScene::build(plan), config.tile_size, config.compression).unwrap();
        let file = RgbImage::read(&dir.path().join("051.tiff")).unwrap();
        assert!(mem == file);
    }
}
