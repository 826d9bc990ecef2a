//! `pipeline inspect`: look at a dataset directory or a TIFF without other tools.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use midog_data::{Category, MidogJson, ScannerMap, TiffImage, write_png_rgb};

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
}

pub fn run(a: InspectArgs) -> Result<()> {
    if a.path.is_dir() {
        return inspect_dataset(&a.path);
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

fn inspect_dataset(dir: &std::path::Path) -> Result<()> {
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
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for img in &midog.images {
        let scanner = map.scanner_of(img.id).map(|s| s.name.clone()).unwrap_or_else(|| "?".into());
        let row = rows.entry(scanner).or_default();
        row.images += 1;
        row.sizes.push((img.width, img.height));
        match TiffImage::open(dir.join(&img.file_name)) {
            Ok(t) => row.res.extend(t.um_per_px()),
            Err(_) => row.missing += 1,
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
    Ok(())
}
