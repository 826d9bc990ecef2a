//! The dataset stage: real MIDOG files (`root`) or a generated synthetic MIDOG-like set
//! (`synthetic`), validated and described in `dataset.json` with domains (scanner, and for
//! multi-domain sets like MIDOG++ tumour type, species and origin lab) and resolutions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use engine::{ExternalInput, ParamError, StageContext, StageDef, StageError};
use midog_data::{Category, ImageDomains, MidogJson, Scanner, ScannerMap, TiffImage};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifact::dataset_manifest::{self, DatasetImage, DatasetManifest, DomainsInfo};
use crate::artifact::write_json;
use crate::dataset_definition::{DatasetFiles, dataset_files, domains_of};

/// What opening an image tells: width, height and µm per pixel when the file says.
type ImageCheck = (u32, u32, Option<f64>);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetParams {
    /// Directory with the annotation file (MIDOG.json or MIDOG++.json) and the images (relative
    /// to the experiment file that sets it).
    pub root: Option<PathBuf>,
    /// Generate a synthetic MIDOG-like dataset into the cache instead.
    pub synthetic: Option<SyntheticParams>,
    /// Image id ranges per scanner (default: the MIDOG 2021 ranges, GT450 unlabelled). With a
    /// domain table, an entry without `ids` gives a scanner of the table its resolution.
    pub scanners: Option<BTreeMap<String, ScannerParams>>,
    /// The annotation file, relative to `root` (default: MIDOG++.json or MIDOG.json, whichever
    /// `root` holds), e.g. "../databases/MIDOG++.json".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<PathBuf>,
    /// A table of each labelled slide's domains and official train/test set, relative to
    /// `root`, e.g. "datasets_xvalidation.csv" (MIDOG++). Images it does not list must belong
    /// to an unlabelled scanner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domains: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticParams {
    /// Images per scanner (1–50; ids follow the MIDOG ranges).
    pub images_per_scanner: u32,
    /// Field of view relative to a real image (0 < scale ≤ 1); cells keep their real size.
    pub scale: f64,
    pub seed: u64,
    /// Multiplier of the real per-area rates of mitoses and hard negatives.
    pub density: f64,
    /// Tile compression: "jpeg" (as real MIDOG files), "deflate" or "none".
    pub compression: String,
    pub jpeg_quality: u8,
    /// Scanners to generate (default all four; with `tumor_types`, those of breast cancer).
    pub scanners: Vec<String>,
    /// A multi-domain set in the MIDOG++ layout with these tumour types, e.g. ["human breast
    /// cancer", "canine lymphosarcoma", "human melanoma"] (default: a MIDOG 2021-like set).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tumor_types: Vec<String>,
    /// With `tumor_types`: images of each type but breast cancer (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_per_tumor_type: Option<u32>,
    /// With `tumor_types`: share of each type's labelled images the table marks test (default 0.22).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_fraction: Option<f64>,
}

impl Default for SyntheticParams {
    fn default() -> Self {
        SyntheticParams {
            images_per_scanner: 10,
            scale: 1.0,
            seed: 2021,
            density: 1.0,
            compression: "jpeg".into(),
            jpeg_quality: 85,
            scanners: vec!["XR".into(), "S360".into(), "CS2".into(), "GT450".into()],
            tumor_types: Vec::new(),
            images_per_tumor_type: None,
            test_fraction: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScannerParams {
    /// Image ids, e.g. "1-50" or "1-10,12,20-25".
    pub ids: String,
    /// Nominal resolution when a file carries none.
    pub um_per_px: f64,
    /// Whether the scanner's images carry labels (unlabelled ones never train or score).
    pub labelled: bool,
    pub model: Option<String>,
}

impl Default for ScannerParams {
    fn default() -> Self {
        ScannerParams { ids: String::new(), um_per_px: 0.25, labelled: true, model: None }
    }
}

pub struct DatasetStage;

/// Bumped when dataset.json changes; the generator's own version enters too.
const STAGE_VERSION: u32 = 1;

impl StageDef for DatasetStage {
    type Params = DatasetParams;
    const KIND: &'static str = "dataset";
    const PATH_PARAMS: &'static [&'static str] = &["root"];
    const VERSION: u32 = STAGE_VERSION * 1000 + midog_synth::GENERATOR_VERSION;
    const SUMMARY: &'static str = "MIDOG images and labels (real files under `root`, or a generated synthetic set)";
    const NEEDS: &'static [&'static str] = &[];

    fn validate(p: &DatasetParams) -> Result<(), ParamError> {
        match (&p.root, &p.synthetic) {
            (Some(_), Some(_)) => {
                return Err(ParamError::new(&["synthetic"], "set either `root` or `synthetic`, not both"));
            }
            (None, None) => {
                return Err(ParamError::new(&[], "the dataset needs `root = \"data/midog\"` or `synthetic = { … }`")
                    .with_help("e.g. synthetic = { images_per_scanner = 8, scale = 0.15 }"));
            }
            _ => {}
        }
        if let Some(s) = &p.synthetic {
            synth_config(s).map_err(|e| ParamError::new(&["synthetic"], e))?;
            if s.tumor_types.is_empty() && (s.images_per_tumor_type.is_some() || s.test_fraction.is_some()) {
                let field = if s.test_fraction.is_some() { "test_fraction" } else { "images_per_tumor_type" };
                return Err(ParamError::new(&["synthetic", field], "applies to multi-domain sets only")
                    .with_help("add tumor_types = [\"human breast cancer\", \"canine lymphosarcoma\", …]"));
            }
            for (field, set) in [("annotations", p.annotations.is_some()), ("domains", p.domains.is_some())] {
                if set {
                    return Err(ParamError::new(
                        &[field],
                        "applies to `root` datasets; a synthetic set writes its own",
                    )
                    .with_help("synthetic = { tumor_types = [...] } writes MIDOG++.json and the domain table"));
                }
            }
        }
        scanner_map(p)?;
        Ok(())
    }

    fn external_inputs(p: &DatasetParams, base: &Path) -> Result<Vec<ExternalInput>, ParamError> {
        let Some(root) = &p.root else { return Ok(Vec::new()) };
        let dir = base.join(root);
        let files = files_of(p, &dir)?;
        let midog = MidogJson::load(&files.json).map_err(|e| ParamError::new(&["root"], e.to_string()))?;
        let mut inputs = vec![ExternalInput { name: files.json_name.clone(), path: files.json.clone() }];
        if let (Some(path), Some(name)) = (&files.table, &files.table_name) {
            inputs.push(ExternalInput { name: name.clone(), path: path.clone() });
        }
        for img in &midog.images {
            inputs.push(ExternalInput { name: img.file_name.clone(), path: dir.join(&img.file_name) });
        }
        Ok(inputs)
    }

    fn resources(_p: &DatasetParams) -> engine::Resources {
        engine::Resources { cpus: 0, gpus: 0, memory_mb: 4096 }
    }
}

/// The dataset's files in `dir`, errors as param errors on the field that chose them.
fn files_of(p: &DatasetParams, dir: &Path) -> Result<DatasetFiles, ParamError> {
    dataset_files(dir, p.annotations.as_deref(), p.domains.as_deref()).map_err(|e| {
        let field = if e.starts_with("domains") {
            "domains"
        } else if e.starts_with("annotations") {
            "annotations"
        } else {
            "root"
        };
        ParamError::new(&[field], e).with_help(
            "`root` is relative to the experiment file and holds the .tiff images; `annotations` and `domains` are relative to `root`",
        )
    })
}

fn synth_config(s: &SyntheticParams) -> Result<midog_synth::SynthConfig, String> {
    let compression = match s.compression.as_str() {
        "jpeg" => midog_synth::Compression::Jpeg { quality: s.jpeg_quality },
        "deflate" => midog_synth::Compression::Deflate,
        "none" => midog_synth::Compression::None,
        other => return Err(format!("compression `{other}`: use \"jpeg\", \"deflate\" or \"none\"")),
    };
    let cfg = midog_synth::SynthConfig {
        images_per_scanner: s.images_per_scanner,
        scale: s.scale,
        seed: s.seed,
        compression,
        scanners: s.scanners.clone(),
        density: s.density,
        multi_domain: (!s.tumor_types.is_empty()).then(|| {
            let d = midog_synth::MultiDomain::default();
            midog_synth::MultiDomain {
                tumour_types: s.tumor_types.clone(),
                images_per_tumour_type: s.images_per_tumor_type.unwrap_or(d.images_per_tumour_type),
                test_fraction: s.test_fraction.unwrap_or(d.test_fraction),
            }
        }),
        ..midog_synth::SynthConfig::default()
    };
    cfg.profiles().map_err(|e| e.to_string())?;
    Ok(cfg)
}

/// The scanner map: the MIDOG 2021 default, or the user's table.
pub fn scanner_map(p: &DatasetParams) -> Result<ScannerMap, ParamError> {
    let Some(table) = &p.scanners else { return Ok(ScannerMap::midog_2021()) };
    let mut entries = Vec::new();
    for (name, s) in table {
        let scanner = Scanner {
            name: name.clone(),
            model: s.model.clone().unwrap_or_else(|| name.clone()),
            um_per_px: s.um_per_px,
            labelled: s.labelled,
        };
        if !(s.um_per_px > 0.0 && s.um_per_px < 100.0) {
            return Err(ParamError::new(
                &["scanners", name, "um_per_px"],
                "must be a resolution in µm per pixel, e.g. 0.25",
            ));
        }
        for part in s.ids.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let range = parse_range(part).ok_or_else(|| {
                ParamError::new(&["scanners", name, "ids"], format!("`{part}` is not an id or a range like 1-50"))
            })?;
            entries.push((range, scanner.clone()));
        }
    }
    if entries.is_empty() {
        if p.domains.is_some() {
            // Only resolutions of the table's scanners: the id ranges stay MIDOG 2021's.
            return Ok(ScannerMap::midog_2021());
        }
        return Err(ParamError::new(&["scanners"], "no id ranges given")
            .with_help("e.g. XR = { ids = \"1-50\", um_per_px = 0.23 }"));
    }
    Ok(ScannerMap { entries })
}

/// Whether the scanner table gives id ranges of its own (then they must agree with a domain
/// table), rather than only resolutions.
fn scanners_explicit(p: &DatasetParams) -> bool {
    p.scanners.as_ref().is_some_and(|t| t.values().any(|s| !s.ids.trim().is_empty()))
}

/// A scanner of the dataset: from the id ranges, the user's table, or MIDOG 2021's list; `None`
/// for one known only by name (its images' files must carry their resolution).
fn scanner_info(p: &DatasetParams, map: &ScannerMap, name: &str) -> Option<Scanner> {
    let key = midog_data::domain_names::name_key;
    if let Some((user, s)) = p.scanners.iter().flatten().find(|(n, _)| key(n) == key(name)) {
        return Some(Scanner {
            name: name.to_string(),
            model: s.model.clone().unwrap_or_else(|| user.clone()),
            um_per_px: s.um_per_px,
            labelled: s.labelled,
        });
    }
    map.scanners()
        .into_iter()
        .find(|s| key(&s.name) == key(name))
        .cloned()
        .or_else(|| midog_data::scanner::known_scanner(name))
}

fn parse_range(s: &str) -> Option<std::ops::RangeInclusive<u32>> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some(a..=b)
        }
        None => {
            let v = s.parse().ok()?;
            Some(v..=v)
        }
    }
}

pub fn run(p: &DatasetParams, ctx: &StageContext) -> Result<(), StageError> {
    let map = scanner_map(p).map_err(|e| StageError::msg(e.message))?;
    let (images_dir, external_root, files) = match (&p.root, &p.synthetic) {
        (Some(root), _) => {
            let dir = ctx.params_dir.join(root);
            let dir = dir.canonicalize().map_err(|e| StageError::io(&dir, e))?;
            let files = files_of(p, &dir).map_err(|e| StageError::msg(e.message))?;
            (dir.clone(), Some(dir), files)
        }
        (None, Some(s)) => {
            let cfg = synth_config(s).map_err(StageError::msg)?;
            let dir = ctx.out_dir().join("images");
            std::fs::create_dir_all(&dir).map_err(|e| StageError::io(&dir, e))?;
            ctx.progress().start(synthetic_images(&cfg), "generating synthetic images");
            let progress = ctx.progress();
            let summary =
                midog_synth::generate(&dir, &cfg, &|done, _| progress.set(done as u64)).map_err(StageError::domain)?;
            ctx.set_summary("synthetic_mitoses", summary.mitoses as u64);
            ctx.set_summary("synthetic_hard_negatives", summary.hard_negatives as u64);
            // A multi-domain set is in the MIDOG++ layout: its table defines its domains.
            let table = cfg.multi_domain.as_ref().map(|_| Path::new(midog_data::domain_table::MIDOGPP_TABLE));
            let files = dataset_files(&dir, None, table).map_err(StageError::msg)?;
            (dir, None, files)
        }
        (None, None) => return Err(StageError::msg("the dataset needs `root` or `synthetic`")),
    };
    let manifest = load_and_validate(&images_dir, external_root, &files, p, &map, ctx)?;
    for attr in manifest.attributes() {
        for value in DatasetManifest::values_among(&attr, &manifest.images) {
            let imgs: Vec<&DatasetImage> =
                manifest.images.iter().filter(|i| i.domain(&attr) == Some(value.as_str())).collect();
            let m: usize = imgs.iter().map(|i| i.mitoses.len()).sum();
            // MIDOG 2021 keeps its summary names (`XR_images`); other attributes are prefixed.
            let name =
                if attr == midog_data::domain_names::SCANNER { value.clone() } else { format!("{attr}={value}") };
            ctx.set_summary(&format!("{name}_images"), imgs.len() as u64);
            ctx.set_summary(&format!("{name}_mitoses"), m as u64);
        }
    }
    if let Some(d) = &manifest.domains {
        for r in &d.renamings {
            tracing::info!(
                "{} `{}` read as `{}` on {} images ({}; {})",
                r.attribute,
                r.written,
                r.canonical,
                r.images,
                r.source,
                r.why
            );
        }
        for n in &d.notes {
            tracing::warn!("{n}");
        }
    }
    write_json(&ctx.out_dir().join(dataset_manifest::FILE), &manifest)
}

/// How many images a synthetic config makes (for the progress bar).
fn synthetic_images(cfg: &midog_synth::SynthConfig) -> u64 {
    let breast = cfg.images_per_scanner as u64 * cfg.scanners.len() as u64;
    match (&cfg.multi_domain, cfg.tumour_profiles()) {
        (Some(m), Ok(types)) => {
            types.iter().map(|t| if t.is_breast() { breast } else { m.images_per_tumour_type as u64 }).sum()
        }
        _ => breast,
    }
}

/// Reads the annotation file (and the domain table) and checks them against the images: every
/// file exists and opens, its size matches, boxes lie inside, categories are known, every image
/// has its domains. Every problem is reported, not just the first.
pub fn load_and_validate(
    dir: &Path,
    external_root: Option<PathBuf>,
    files: &DatasetFiles,
    p: &DatasetParams,
    map: &ScannerMap,
    ctx: &StageContext,
) -> Result<DatasetManifest, StageError> {
    let json = &files.json;
    let midog = MidogJson::load(json).map_err(StageError::domain)?;
    let mut problems: Vec<String> = midog.check(json);
    let domains = match domains_of(files, &midog, map, scanners_explicit(p)) {
        Ok(d) => Some(d),
        Err(e) => {
            problems.extend(e);
            None
        }
    };
    ctx.progress().start(midog.images.len() as u64, "checking images");
    let checked: Vec<Result<ImageCheck, String>> = midog
        .images
        .par_iter()
        .map(|img| {
            let path = dir.join(&img.file_name);
            let tiff = TiffImage::open(&path).map_err(|e| format!("image {} ({}): {e}", img.id, img.file_name))?;
            ctx.progress().inc(1);
            Ok((tiff.width(), tiff.height(), tiff.um_per_px()))
        })
        .collect();
    let of_image: BTreeMap<u32, &ImageDomains> = domains.iter().flat_map(|d| &d.images).map(|d| (d.id, d)).collect();
    let mut images = Vec::new();
    for (img, check) in midog.images.iter().zip(checked) {
        let (w, h, res) = match check {
            Ok(v) => v,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if (w, h) != (img.width, img.height) {
            problems.push(format!(
                "image {} ({}): {} says {} × {} px, the file is {w} × {h}",
                img.id, img.file_name, files.json_name, img.width, img.height
            ));
        }
        let Some(d) = of_image.get(&img.id) else { continue };
        let scanner = scanner_info(p, map, &d.scanner);
        let um_per_px = match (res, &scanner) {
            (Some(r), _) => r,
            (None, Some(s)) => s.um_per_px,
            (None, None) => {
                problems.push(format!(
                    "image {} ({}): the file has no resolution tags and scanner `{}` has no nominal resolution; \
                     give it: [stages.dataset.scanners.\"{}\"] um_per_px = …",
                    img.id, img.file_name, d.scanner, d.scanner
                ));
                continue;
            }
        };
        let anns = midog.annotations.iter().filter(|a| a.image_id == img.id);
        let (mut mitoses, mut imposters) = (Vec::new(), Vec::new());
        for a in anns {
            match Category::from_id(a.category_id) {
                Some(Category::Mitosis) => mitoses.push(a.bbox),
                Some(Category::Imposter) => imposters.push(a.bbox),
                None => {}
            }
        }
        if !(d.labelled || mitoses.is_empty() && imposters.is_empty()) {
            tracing::warn!(
                "image {} is unlabelled (scanner {}), yet has annotations; they are ignored",
                img.id,
                d.scanner
            );
            mitoses.clear();
            imposters.clear();
        }
        images.push(DatasetImage {
            id: img.id,
            file_name: img.file_name.clone(),
            width: img.width,
            height: img.height,
            scanner: d.scanner.clone(),
            um_per_px,
            labelled: d.labelled,
            mitoses,
            imposters,
            domains: d.values.clone(),
            official_set: d.set,
        });
    }
    if !problems.is_empty() {
        let n = problems.len();
        let shown: Vec<String> = problems.into_iter().take(20).map(|p| format!("  - {p}")).collect();
        return Err(StageError::msg(format!(
            "{}: {n} problem{} with the dataset:\n{}{}",
            json.display(),
            if n == 1 { "" } else { "s" },
            shown.join("\n"),
            if n > 20 { format!("\n  … and {} more", n - 20) } else { String::new() }
        )));
    }
    images.sort_by_key(|i| i.id);
    let domains = domains.unwrap_or_default();
    // Scanners in id-range order first (MIDOG 2021's XR, S360, CS2, GT450), then by first image.
    let mut names: Vec<String> = map.scanners().iter().map(|s| s.name.clone()).collect();
    names.extend(images.iter().map(|i| i.scanner.clone()));
    let mut scanners: Vec<Scanner> = Vec::new();
    for name in names {
        let imgs: Vec<&DatasetImage> = images.iter().filter(|i| i.scanner == name).collect();
        if imgs.is_empty() || scanners.iter().any(|s| s.name == name) {
            continue;
        }
        let mut s = scanner_info(p, map, &name).unwrap_or_else(|| {
            let mut res: Vec<f64> = imgs.iter().map(|i| i.um_per_px).collect();
            res.sort_by(f64::total_cmp);
            Scanner { name: name.clone(), model: name.clone(), um_per_px: res[res.len() / 2], labelled: true }
        });
        s.name = name.clone();
        s.labelled = imgs.iter().any(|i| i.labelled);
        scanners.push(s);
    }
    let multi = !domains.attributes.is_empty() || !domains.renamings.is_empty() || files.table.is_some();
    let info = multi.then(|| DomainsInfo {
        attributes: domains.attributes.clone(),
        sources: domains.sources.clone(),
        renamings: domains.renamings.clone(),
        notes: domains.notes.clone(),
        official_sets: images.iter().any(|i| i.official_set.is_some()),
    });
    Ok(DatasetManifest { external_root, scanners, images, domains: info })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ranges_parse() {
        assert_eq!(parse_range("1-50"), Some(1..=50));
        assert_eq!(parse_range("7"), Some(7..=7));
        assert_eq!(parse_range("9-3"), None);
        assert_eq!(parse_range("x"), None);
    }

    #[test]
    fn custom_scanner_tables_become_maps() {
        let mut t = BTreeMap::new();
        t.insert("A".to_string(), ScannerParams { ids: "1-3, 9".into(), um_per_px: 0.5, labelled: true, model: None });
        t.insert("B".to_string(), ScannerParams { ids: "4-8".into(), um_per_px: 0.25, labelled: false, model: None });
        let p = DatasetParams { root: Some("x".into()), scanners: Some(t), ..Default::default() };
        let m = scanner_map(&p).unwrap();
        assert_eq!(m.scanner_of(9).unwrap().name, "A");
        assert!(!m.scanner_of(5).unwrap().labelled);
        assert!(m.scanner_of(10).is_none());
    }
}
