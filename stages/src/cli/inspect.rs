//! `pipeline inspect`: look at a dataset directory or a TIFF without other tools. A directory is
//! also checked: every image must open and every tile of it decode (`--quick` only opens them);
//! unreadable files are named and the exit status is non-zero.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use clap::Args;
use midog_data::{Category, MidogJson, ScannerMap, TiffImage, TileCache, write_png_rgb};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A dataset directory (with MIDOG.json) or one TIFF file.
    pub path: PathBuf,
    /// With a TIFF: a region to extract, `X,Y,W,H` in pixels of the chosen level.
    #[arg(long, value_name = "X,Y,W,H", requires = "out")]
    pub region: Option<String>,
    /// Where to write the region as PNG.
    #[arg(long, value_name = "FILE.png", requires = "region")]
    pub out: Option<PathBuf>,
    /// Pyramid level of the region (0 = full resolution).
    #[arg(long, default_value_t = 0)]
    pub level: usize,
    /// With a dataset directory: open the images but do not decode every tile of them.
    #[arg(long)]
    pub quick: bool,
}

pub fn run(a: InspectArgs) -> Result<()> {
    if a.path.is_dir() {
        return inspect_dataset(&a.path, a.quick);
    }
    let tiff = TiffImage::open(&a.path)?;
    print!("{}", tiff.info());
    if let (Some(region), Some(out)) = (&a.region, &a.out) {
        let parts: Vec<i64> = region
            .split(',')
            .map(|s| s.trim().parse::<i64>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("--region {region}: expected X,Y,W,H"))?;
        let [x, y, w, h] = parts[..] else { bail!("--region {region}: expected four numbers X,Y,W,H") };
        if w <= 0 || h <= 0 || w > 20_000 || h > 20_000 {
            bail!("--region {region}: width and height must be between 1 and 20000");
        }
        if a.level >= tiff.levels().len() {
            bail!("--level {}: the file has {} level(s)", a.level, tiff.levels().len());
        }
        let rgb = tiff.read_region_vec(a.level, x, y, w as u32, h as u32)?;
        write_png_rgb(out, w as u32, h as u32, &rgb)?;
        println!("wrote {} ({w} × {h} px from level {} at {x}, {y})", out.display(), a.level);
    }
    Ok(())
}

fn inspect_dataset(dir: &Path, quick: bool) -> Result<()> {
    let json = dir.join("MIDOG.json");
    if !json.is_file() {
        bail!("{} has no MIDOG.json", dir.display());
    }
    let midog = MidogJson::load(&json)?;
    let map = ScannerMap::midog_2021();
    #[derive(Default)]
    struct Row {
        images: usize,
        mitoses: usize,
        imposters: usize,
        sizes: Vec<(u32, u32)>,
        res: Vec<f64>,
        missing: usize,
    }
    let read = read_every_tile(dir, &midog, quick);
    let mut unreadable = Vec::new();
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for (img, read) in midog.images.iter().zip(read) {
        let scanner = map.scanner_of(img.id).map(|s| s.name.clone()).unwrap_or_else(|| "?".into());
        let row = rows.entry(scanner).or_default();
        row.images += 1;
        row.sizes.push((img.width, img.height));
        match read {
            Ok(res) => row.res.extend(res),
            Err(e) => {
                row.missing += 1;
                unreadable.push(format!("image {} ({}): {e}", img.id, img.file_name));
            }
        }
        for a in midog.annotations.iter().filter(|a| a.image_id == img.id) {
            match Category::from_id(a.category_id) {
                Some(Category::Mitosis) => row.mitoses += 1,
                Some(Category::Imposter) => row.imposters += 1,
                None => {}
            }
        }
    }
    println!("{}: {} images, {} annotations", dir.display(), midog.images.len(), midog.annotations.len());
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(name, r)| {
            let mean = |f: fn(&(u32, u32)) -> u32| {
                r.sizes.iter().map(f).map(f64::from).sum::<f64>() / r.sizes.len().max(1) as f64
            };
            let res = if r.res.is_empty() {
                "–".into()
            } else {
                format!("{:.3}", r.res.iter().sum::<f64>() / r.res.len() as f64)
            };
            vec![
                name.clone(),
                r.images.to_string(),
                format!("{:.0} × {:.0}", mean(|s| s.0), mean(|s| s.1)),
                res,
                r.mitoses.to_string(),
                r.imposters.to_string(),
                if r.missing > 0 { format!("{} unreadable", r.missing) } else { "ok".into() },
            ]
        })
        .collect();
    println!(
        "{}",
        engine::progress::table(
            &["scanner", "images", "mean size (px)", "µm/px", "mitotic figures", "hard negatives", "files"],
            &table
        )
    );
    let problems = midog.check(&json);
    for p in problems.iter().take(20) {
        println!("problem: {p}");
    }
    if !unreadable.is_empty() {
        let n = unreadable.len();
        let shown: Vec<String> = unreadable.into_iter().take(20).map(|u| format!("  - {u}")).collect();
        bail!("{n} of {} images cannot be read:\n{}", midog.images.len(), shown.join("\n"));
    }
    if !problems.is_empty() {
        bail!("{}: {} problem(s) with the annotations (listed above)", json.display(), problems.len());
    }
    Ok(())
}

/// Opens every image and (unless `quick`) decodes every tile of it, in parallel with a progress
/// bar: a file that opens can still hold a corrupt tile. Per image: its µm/px, or why it cannot
/// be read (the file, level, tile and byte offset).
fn read_every_tile(dir: &Path, midog: &MidogJson, quick: bool) -> Vec<Result<Option<f64>, String>> {
    use rayon::prelude::*;
    let display = engine::progress::RunDisplay::new(false);
    let bar = display.stage_bar(if quick { "opening images" } else { "decoding every tile" });
    let done = AtomicU64::new(0);
    let total = AtomicU64::new(0);
    let opened: Vec<Result<TiffImage, String>> = midog
        .images
        .par_iter()
        .map(|img| {
            let tiff = TiffImage::open_with_cache(dir.join(&img.file_name), Arc::new(TileCache::new(0)))
                .map_err(|e| e.to_string())?;
            total.fetch_add(tiff.chunk_total() as u64, Ordering::Relaxed);
            Ok(tiff)
        })
        .collect();
    let total = if quick { 0 } else { total.into_inner() };
    let read = opened
        .into_par_iter()
        .map(|tiff| {
            let tiff = tiff?;
            if !quick {
                tiff.verify(&|| {
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if d.is_multiple_of(64) || d == total {
                        bar.update(d, total, "tiles");
                    }
                })
                .map_err(|e| e.to_string())?;
            }
            Ok(tiff.um_per_px())
        })
        .collect();
    bar.finish();
    read
}
