//! The dataset as a whole: plans the images, renders and writes them in parallel (images and
//! tiles in parallel, yet bit-identical whatever the thread count, because every tile is a pure
//! function of its scene), and writes MIDOG.json (GT450 unannotated, as in MIDOG),
//! `heldout_labels.json` (the unlabelled scanners' annotations, in the MIDOG.json layout: the
//! held-out test domain, which the dataset stage never hands to training, validation or
//! sampling) and `synthetic_truth.json` with every special cell, labelled or not, for diagnostics.
//! A multi-domain set is written in the MIDOG++ layout instead: MIDOG++.json (every image with
//! its `tumor_type`) and `datasets_xvalidation.csv` (one row per labelled slide, with the table's
//! own spellings, "Hamammatsu XR" and "canine lymphoma" included).

use std::path::Path;
use std::sync::mpsc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use midog_data::{AnnotationEntry, Category, ImageEntry, MidogJson, OfficialSet};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::config::{Compression, SynthConfig};
use crate::error::SynthError;
use crate::hash_noise::derive;
use crate::render::render_region;
use crate::rgb_image::RgbImage;
use crate::scanner_profile::ScannerProfile;
use crate::scene::{ImagePlan, ImageScene, TruthClass, TruthObject, plan_images, plan_tumour_images};
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
    /// Per tumour type (multi-domain sets only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_tumour_type: Vec<TumourSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TumourSummary {
    pub tumour_type: String,
    pub images: usize,
    pub mitoses: usize,
    /// Labelled images the table marks `test`.
    pub test_images: usize,
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
    /// Multi-domain sets only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tumor_type: Option<String>,
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
            "{} synthetic MIDOG-like H&E; {}scanner={} ({}); image id={}; seed={}; image seed={:#018x}; scale={}; density={}",
            generator_name(),
            match config.multi_domain {
                Some(_) => format!("tumour type={}; ", plan.tumour.name),
                None => String::new(),
            },
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
        tumor_type: config.multi_domain.as_ref().map(|_| plan.tumour.name.to_string()),
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
    let plans = plan_dataset(config, &profiles)?;
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
    let json_name =
        if config.multi_domain.is_some() { midog_data::midog::MIDOGPP_JSON } else { midog_data::midog::MIDOG_JSON };
    let midog_path = out_dir.join(json_name);
    midog.save(&midog_path).map_err(|e| SynthError::Data { path: midog_path.clone(), source: e })?;
    if truth_images.iter().any(|i| !labelled_image(i, &profiles)) {
        let heldout = midog_json(&truth_images, config, &profiles, Labels::HeldOut);
        let path = out_dir.join(HELDOUT_LABELS_FILE);
        heldout.save(&path).map_err(|e| SynthError::Data { path: path.clone(), source: e })?;
    }
    let sets = match &config.multi_domain {
        Some(m) => {
            let sets = official_sets(&truth_images, &profiles, m.test_fraction, config.seed);
            write_domain_table(&out_dir.join(midog_data::domain_table::MIDOGPP_TABLE), &truth_images, &sets)?;
            sets
        }
        None => Default::default(),
    };
    let truth = SyntheticTruth { generator: generator_name(), config: config.clone(), images: truth_images };
    let truth_path = out_dir.join("synthetic_truth.json");
    let json = serde_json::to_vec_pretty(&truth).map_err(|e| SynthError::encode(&truth_path, e.to_string()))?;
    std::fs::write(&truth_path, json).map_err(|e| SynthError::io(&truth_path, e))?;

    let mut summary = SynthSummary { images: truth.images.len(), bytes, ..SynthSummary::default() };
    // The breast cancer scanners in id order, then those of the other tumour types.
    let mut scanners: Vec<(String, bool)> = profiles.iter().map(|p| (p.name.to_string(), p.labelled)).collect();
    for img in &truth.images {
        if !scanners.iter().any(|(n, _)| *n == img.scanner) {
            scanners.push((img.scanner.clone(), true));
        }
    }
    for (name, labelled) in scanners {
        let mut s = ScannerSummary { scanner: name.clone(), labelled, ..ScannerSummary::default() };
        for img in truth.images.iter().filter(|i| i.scanner == name) {
            s.images += 1;
            s.mitoses += img.objects.iter().filter(|o| o.class == TruthClass::Mitosis).count();
            s.hard_negatives += img.objects.iter().filter(|o| o.class == TruthClass::HardNegative).count();
            summary.lookalikes += img.objects.iter().filter(|o| o.class == TruthClass::Lookalike).count();
        }
        summary.mitoses += s.mitoses;
        summary.hard_negatives += s.hard_negatives;
        summary.per_scanner.push(s);
    }
    if config.multi_domain.is_some() {
        for t in config.tumour_profiles()? {
            let imgs: Vec<&TruthImage> =
                truth.images.iter().filter(|i| i.tumor_type.as_deref() == Some(t.name)).collect();
            summary.per_tumour_type.push(TumourSummary {
                tumour_type: t.name.to_string(),
                images: imgs.len(),
                mitoses: imgs.iter().flat_map(|i| &i.objects).filter(|o| o.class == TruthClass::Mitosis).count(),
                test_images: imgs.iter().filter(|i| sets.get(&i.id) == Some(&OfficialSet::Test)).count(),
            });
        }
    }
    Ok(summary)
}

/// Whether the annotation file carries an image's annotations: every image but those of an
/// unlabelled breast cancer scanner (GT450), as in MIDOG++.
fn labelled_image(img: &TruthImage, breast_scanners: &[ScannerProfile]) -> bool {
    breast_scanners.iter().find(|p| p.name == img.scanner).is_none_or(|p| p.labelled)
}

/// Every image to make: MIDOG 2021's scanner blocks, or for a multi-domain set each tumour type
/// in its MIDOG++ block (breast cancer on the chosen scanners, the others on their own).
fn plan_dataset(config: &SynthConfig, profiles: &[ScannerProfile]) -> Result<Vec<ImagePlan>, SynthError> {
    let (n, scale, seed, density) = (config.images_per_scanner, config.scale, config.seed, config.density);
    let Some(m) = &config.multi_domain else { return Ok(plan_images(profiles, n, scale, seed, density)) };
    let mut plans = Vec::new();
    for t in config.tumour_profiles()? {
        if t.is_breast() {
            plans.extend(plan_images(profiles, n, scale, seed, density));
            continue;
        }
        let scanner = ScannerProfile::any_by_name(t.scanner).ok_or_else(|| {
            SynthError::Config(format!("tumour type `{}`: no scanner profile `{}`", t.name, t.scanner))
        })?;
        plans.extend(plan_tumour_images(&t, &scanner, m.images_per_tumour_type, scale, seed, density));
    }
    Ok(plans)
}

/// The table's `Dataset` column: per tumour type a seeded `test_fraction` of its labelled images
/// (at least one when it has two or more, never all).
fn official_sets(
    images: &[TruthImage],
    profiles: &[ScannerProfile],
    test_fraction: f64,
    seed: u64,
) -> std::collections::BTreeMap<u32, OfficialSet> {
    let labelled = |img: &TruthImage| labelled_image(img, profiles);
    let mut by_type: std::collections::BTreeMap<&str, Vec<u32>> = std::collections::BTreeMap::new();
    for img in images.iter().filter(|i| labelled(i)) {
        by_type.entry(img.tumor_type.as_deref().unwrap_or("")).or_default().push(img.id);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(derive(seed, 0x7AB1E));
    let mut out = std::collections::BTreeMap::new();
    for (_, mut ids) in by_type {
        ids.sort_unstable();
        ids.shuffle(&mut rng);
        let n = ((ids.len() as f64 * test_fraction).round() as usize)
            .clamp(usize::from(ids.len() > 1), ids.len().saturating_sub(1));
        for (k, id) in ids.into_iter().enumerate() {
            out.insert(id, if k < n { OfficialSet::Test } else { OfficialSet::Train });
        }
    }
    out
}

/// `datasets_xvalidation.csv` in the MIDOG++ layout: `;`-separated, one row per labelled slide in
/// id order, the scanner spelt as MIDOG++ spells it (the breast-cancer XR as "Hamammatsu XR").
fn write_domain_table(
    path: &Path,
    images: &[TruthImage],
    sets: &std::collections::BTreeMap<u32, OfficialSet>,
) -> Result<(), SynthError> {
    let mut text = midog_data::domain_table::MIDOGPP_HEADER.join(";");
    text.push('\n');
    let mut rows: Vec<&TruthImage> = images.iter().filter(|i| sets.contains_key(&i.id)).collect();
    rows.sort_by_key(|i| i.id);
    for img in rows {
        let t = img
            .tumor_type
            .as_deref()
            .and_then(crate::TumourProfile::by_name)
            .unwrap_or_else(crate::TumourProfile::breast);
        let scanner = match (t.is_breast(), img.scanner.as_str()) {
            (true, "XR") => "Hamammatsu XR",
            (true, "S360") => "Hamamatsu S360",
            (true, "CS2") => "Aperio CS2",
            (true, other) => other,
            (false, _) => t.table_scanner,
        };
        let set = sets[&img.id].as_str();
        text.push_str(&format!("{};{set};{};{scanner};{};{}\n", img.id, t.table_name, t.origin, t.species));
    }
    std::fs::write(path, text).map_err(|e| SynthError::io(path, e))
}

/// Which images a MIDOG-layout file of the truth covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Labels {
    /// MIDOG.json: every image, annotations of the labelled images only.
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
    let images: Vec<&TruthImage> =
        images.iter().filter(|i| which == Labels::Labelled || !labelled_image(i, profiles)).collect();
    let mut annotations = Vec::new();
    for img in images.iter().copied() {
        if labelled_image(img, profiles) != (which == Labels::Labelled) {
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
            "description": match (which, config.multi_domain.is_some()) {
                (Labels::Labelled, true) => "synthetic MIDOG++-like multi-domain dataset",
                (Labels::Labelled, false) => "synthetic MIDOG 2021-like dataset",
                (Labels::HeldOut, _) => "held-out labels of the unlabelled scanners of a synthetic dataset (test only)",
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
                extra: i
                    .tumor_type
                    .iter()
                    .map(|t| (midog_data::domains::TUMOR_TYPE_FIELD.to_string(), serde_json::json!(t)))
                    .collect(),
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
    fn multi_domain_sets_are_written_in_the_midogpp_layout() {
        let dir = tempfile::tempdir().unwrap();
        let config = SynthConfig {
            scanners: vec!["XR".into(), "GT450".into()],
            multi_domain: Some(crate::MultiDomain {
                tumour_types: vec!["human melanoma".into(), "canine lymphoma".into(), "human breast cancer".into()],
                images_per_tumour_type: 3,
                test_fraction: 0.3,
            }),
            ..tiny(Compression::Jpeg { quality: 85 })
        };
        let s = generate(dir.path(), &config, &|_, _| {}).unwrap();
        assert!(!dir.path().join("MIDOG.json").exists());
        let json_path = dir.path().join("MIDOG++.json");
        let m = MidogJson::load(&json_path).unwrap();
        assert!(m.check(&json_path).is_empty());
        let ids: Vec<u32> = m.images.iter().map(|i| i.id).collect();
        assert_eq!(ids, [1, 2, 151, 152, 245, 246, 247, 505, 506, 507]);
        let tumour = |id: u32| m.images.iter().find(|i| i.id == id).unwrap().extra["tumor_type"].as_str().unwrap();
        assert_eq!(
            (tumour(1), tumour(151), tumour(246), tumour(507)),
            ("human breast cancer", "human breast cancer", "canine lymphosarcoma", "human melanoma")
        );
        assert!(m.annotations.iter().all(|a| !(151..=200).contains(&a.image_id)), "GT450 stays unannotated");
        let truth = SyntheticTruth::load(&dir.path().join("synthetic_truth.json")).unwrap();
        for img in truth.images.iter().filter(|i| !(151..=200).contains(&i.id)) {
            let labelled = img.objects.iter().filter(|o| o.class != TruthClass::Lookalike).count();
            let annotated = m.annotations.iter().filter(|a| a.image_id == img.id).count();
            assert_eq!(annotated, labelled, "image {} ({:?})", img.id, img.tumor_type);
        }
        let lymphoma: usize =
            s.per_tumour_type.iter().filter(|t| t.tumour_type == "canine lymphosarcoma").map(|t| t.mitoses).sum();
        assert!(lymphoma > 0 && s.per_scanner.iter().any(|p| p.scanner == "3D Histech" && p.mitoses == lymphoma));

        let table_path = dir.path().join("datasets_xvalidation.csv");
        let text = std::fs::read_to_string(&table_path).unwrap();
        assert!(text.starts_with("Slide;Dataset;Tumor;Scanner;Origin;Species\n"), "{text}");
        assert!(text.contains("1;") && text.contains(";human breast cancer;Hamammatsu XR;UMC Utrecht;Human"), "{text}");
        assert!(text.contains(";human melanoma;Hamamatsu XR;UMC Utrecht;Human"), "{text}");
        assert!(text.contains(";canine lymphoma;3D Histech;VMU Vienna;Canine"), "{text}");
        let table = midog_data::DomainTable::parse(&table_path, &text).unwrap();
        assert_eq!(table.rows.keys().copied().collect::<Vec<_>>(), [1, 2, 245, 246, 247, 505, 506, 507]);
        let d = midog_data::domains::assign(&midog_data::domains::Sources {
            json: &m,
            json_name: "MIDOG++.json",
            table: Some(&table),
            scanners: &midog_data::ScannerMap::midog_2021(),
            scanners_explicit: false,
        })
        .unwrap();
        let of = |id: u32| d.images.iter().find(|i| i.id == id).unwrap();
        assert_eq!(
            (of(1).scanner.as_str(), of(505).scanner.as_str(), of(245).scanner.as_str()),
            ("XR", "XR", "3D Histech")
        );
        assert_eq!(of(245).values["tumor_type"], "canine lymphosarcoma");
        assert!(!of(151).labelled && of(151).set.is_none());
        for t in &s.per_tumour_type {
            assert!(t.test_images >= 1 && t.test_images < t.images, "{t:?}");
        }
        assert_eq!(s.per_tumour_type.len(), 3);
        let truth = SyntheticTruth::load(&dir.path().join("synthetic_truth.json")).unwrap();
        assert!(truth.images.iter().all(|i| i.tumor_type.is_some()));
    }

    #[test]
    fn midog_2021_sets_carry_no_tumour_fields() {
        let dir = tempfile::tempdir().unwrap();
        let config = SynthConfig { scanners: vec!["CS2".into()], images_per_scanner: 1, ..tiny(Compression::Deflate) };
        generate(dir.path(), &config, &|_, _| {}).unwrap();
        let truth = std::fs::read_to_string(dir.path().join("synthetic_truth.json")).unwrap();
        assert!(!truth.contains("tumor_type") && !truth.contains("multi_domain"), "{truth}");
        let m = std::fs::read_to_string(dir.path().join("MIDOG.json")).unwrap();
        assert!(!m.contains("tumor_type"));
        assert!(!dir.path().join("datasets_xvalidation.csv").exists());
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
