//! `pipeline inspect`: look at a dataset directory or a TIFF without other tools. A directory
//! shows its counts per domain (scanner; tumour type, species and origin lab of a multi-domain
//! set like MIDOG++) and every spelling it normalised. It is also checked: every image must open and every tile of it decode (`--quick` only opens them);
//! unreadable files are named and the exit status is non-zero.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use clap::Args;
use midog_data::domain_names::{SCANNER, UNKNOWN, attribute_label};
use midog_data::{Category, MidogJson, OfficialSet, ScannerMap, TiffImage, TileCache, write_png_rgb};

use crate::dataset_definition::{dataset_files, domains_of, load_table};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A dataset directory (with MIDOG.json or MIDOG++.json) or one TIFF file.
    pub path: PathBuf,
    /// With a dataset directory: the annotation file, relative to it (default: MIDOG++.json or
    /// MIDOG.json, whichever is there).
    #[arg(long, value_name = "FILE")]
    pub annotations: Option<PathBuf>,
    /// With a dataset directory: its domain table, relative to it (default:
    /// datasets_xvalidation.csv when it is there). Counts per tumour type, species, origin.
    #[arg(long, value_name = "FILE.csv")]
    pub domains: Option<PathBuf>,
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
        return inspect_dataset(&a.path, &a);
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

fn inspect_dataset(dir: &Path, a: &InspectArgs) -> Result<()> {
    // The table: the one asked for, else MIDOG++'s beside the images (said so below).
    let default_table = Path::new(midog_data::domain_table::MIDOGPP_TABLE);
    let table = match &a.domains {
        Some(t) => Some(t.as_path()),
        None => dir.join(default_table).is_file().then_some(default_table),
    };
    let files = dataset_files(dir, a.annotations.as_deref(), table).map_err(|e| anyhow::anyhow!(e))?;
    let json = files.json.clone();
    let midog = MidogJson::load(&json)?;
    let map = ScannerMap::midog_2021();
    let table = load_table(&files)?;
    let domains = domains_of(&files, &midog, table.as_ref(), &map, false);
    let read = read_every_tile(dir, &midog, a.quick);
    let mut unreadable = Vec::new();
    let mut res_of: BTreeMap<u32, Option<f64>> = BTreeMap::new();
    for (img, read) in midog.images.iter().zip(read) {
        match read {
            Ok(res) => {
                res_of.insert(img.id, res);
            }
            Err(e) => unreadable.push(format!("image {} ({}): {e}", img.id, img.file_name)),
        }
    }
    let counts = |id: u32| {
        let (mut m, mut h) = (0, 0);
        for a in midog.annotations.iter().filter(|a| a.image_id == id) {
            match Category::from_id(a.category_id) {
                Some(Category::Mitosis) => m += 1,
                Some(Category::Imposter) => h += 1,
                None => {}
            }
        }
        (m, h)
    };
    println!(
        "{}: {} images, {} annotations ({}{})",
        dir.display(),
        midog.images.len(),
        midog.annotations.len(),
        files.json_name,
        files.table.as_ref().map(|t| format!(", domain table {}", t.display())).unwrap_or_default()
    );
    if a.domains.is_none() && table.is_some() {
        println!(
            "  (the dataset stage reads the table only with domains = \"{}\" in [stages.dataset])",
            default_table.display()
        );
    }
    let domains = match domains {
        Ok(d) => d,
        Err(problems) => {
            for p in problems.iter().take(20) {
                println!("problem: {p}");
            }
            bail!("{}: {} problem(s) with the dataset's domains (listed above)", json.display(), problems.len());
        }
    };
    let by_id: BTreeMap<u32, &midog_data::ImageEntry> = midog.images.iter().map(|i| (i.id, i)).collect();
    let mut attributes = vec![SCANNER.to_string()];
    attributes.extend(domains.summary.attributes.iter().cloned());
    for attr in &attributes {
        let value_of = |d: &midog_data::ImageDomains| -> String {
            if attr == SCANNER { d.scanner.clone() } else { d.values.get(attr).cloned().unwrap_or_default() }
        };
        let mut values: Vec<String> = domains.images.iter().map(value_of).collect();
        values.sort_by(|a, b| (a == UNKNOWN).cmp(&(b == UNKNOWN)).then(a.cmp(b)));
        values.dedup();
        let rows: Vec<Vec<String>> = values
            .iter()
            .map(|v| {
                let imgs: Vec<&midog_data::ImageDomains> =
                    domains.images.iter().filter(|d| &value_of(d) == v).collect();
                let labelled = imgs.iter().filter(|d| d.labelled).count();
                let test = imgs.iter().filter(|d| d.set == Some(OfficialSet::Test)).count();
                let (m, h) = imgs.iter().map(|d| counts(d.id)).fold((0, 0), |(a, b), (c, e)| (a + c, b + e));
                let mut row = vec![v.clone(), imgs.len().to_string(), labelled.to_string()];
                if domains.images.iter().any(|d| d.set.is_some()) {
                    row.push(format!("{} / {}", labelled - test, test));
                }
                row.extend([m.to_string(), h.to_string()]);
                if attr == SCANNER {
                    let sizes: Vec<(u32, u32)> =
                        imgs.iter().filter_map(|d| by_id.get(&d.id)).map(|i| (i.width, i.height)).collect();
                    let mean = |f: fn(&(u32, u32)) -> u32| {
                        sizes.iter().map(f).map(f64::from).sum::<f64>() / sizes.len().max(1) as f64
                    };
                    let res: Vec<f64> = imgs.iter().filter_map(|d| res_of.get(&d.id).copied().flatten()).collect();
                    let unread = imgs.iter().filter(|d| !res_of.contains_key(&d.id)).count();
                    row.push(format!("{:.0} × {:.0}", mean(|s| s.0), mean(|s| s.1)));
                    row.push(if res.is_empty() {
                        "–".into()
                    } else {
                        format!("{:.3}", res.iter().sum::<f64>() / res.len() as f64)
                    });
                    row.push(if unread > 0 { format!("{unread} unreadable") } else { "ok".into() });
                }
                row
            })
            .collect();
        let mut head = vec![attribute_label(attr), "images", "labelled"];
        if domains.images.iter().any(|d| d.set.is_some()) {
            head.push("train / test");
        }
        head.extend(["mitotic figures", "hard negatives"]);
        if attr == SCANNER {
            head.extend(["mean size (px)", "µm/px", "files"]);
        }
        println!("{}", engine::progress::table(&head, &rows));
    }
    for src in &domains.summary.sources {
        println!("source: {src}");
    }
    for r in &domains.summary.renamings {
        println!(
            "read as: {} `{}` → `{}` ({} image{}; {}; {})",
            attribute_label(&r.attribute),
            r.written,
            r.canonical,
            r.images,
            if r.images == 1 { "" } else { "s" },
            r.source,
            r.why
        );
    }
    for n in &domains.summary.notes {
        println!("note: {n}");
    }
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
