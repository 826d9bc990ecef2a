//! The dataset stage: real MIDOG files (`root`) or a generated synthetic MIDOG-like set
//! (`synthetic`), validated and described in `dataset.json` with domains (scanner, and for
//! multi-domain sets like MIDOG++ tumour type, species and origin lab) and resolutions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{ExternalInput, ParamError, StageContext, StageDef, StageError};
use midog_data::{Category, ImageDomains, MidogJson, Scanner, ScannerMap, TiffImage, TileCache};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifact::dataset_manifest::{self, DatasetImage, DatasetManifest, DomainsInfo};
use crate::artifact::heldout::{self, HeldoutImage, HeldoutLabels};
use crate::artifact::write_json;
use crate::dataset_definition::{DatasetFiles, dataset_files, domains_of, load_table};

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
    /// Labels of unlabelled-scanner images, kept apart (MIDOG.json layout, relative to the
    /// experiment file): only the split's `heldout` modes use them, as a test set. A synthetic set
    /// brings its own (`heldout_labels.json`, the GT450 truth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heldout_labels: Option<PathBuf>,
    /// Read images that MIDOG.json names outside `root` (absolute paths, or paths with `..`).
    /// Off by default: such names (common in COCO exports) usually point at another machine's
    /// disk. Not part of the key: it only permits reading, it changes no output.
    pub allow_outside_root: bool,
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
/// 2: `heldout.json` beside `dataset.json`.
const STAGE_VERSION: u32 = 2;

impl StageDef for DatasetStage {
    type Params = DatasetParams;
    const KIND: &'static str = "dataset";
    const PATH_PARAMS: &'static [&'static str] = &["root", "heldout_labels"];
    const NON_KEY_PARAMS: &'static [&'static str] = &["allow_outside_root"];
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
            if p.heldout_labels.is_some() {
                return Err(ParamError::new(
                    &["heldout_labels"],
                    "a synthetic dataset brings its own held-out labels; set heldout_labels only with `root`",
                ));
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
        let problems = file_name_problems(&midog, p.allow_outside_root);
        if !problems.is_empty() {
            return Err(ParamError::new(&["root"], problem_list(&files.json, problems)));
        }
        for img in &midog.images {
            inputs.push(ExternalInput { name: img.file_name.clone(), path: dir.join(&img.file_name) });
        }
        if let Some(h) = &p.heldout_labels {
            let path = base.join(h);
            if !path.is_file() {
                return Err(ParamError::new(&["heldout_labels"], format!("{} does not exist", path.display())));
            }
            inputs.push(ExternalInput { name: "heldout_labels".into(), path });
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
        // A file that is not there yet is a missing input, so `status` and `dag` still plan.
        let absent = match field {
            "annotations" => p.annotations.as_ref().map(|a| dir.join(a)),
            "domains" => p.domains.as_ref().map(|d| dir.join(d)),
            _ => (!dir.join(midog_data::midog::MIDOGPP_JSON).is_file()
                && !dir.join(midog_data::midog::MIDOG_JSON).is_file())
            .then(|| dir.join(midog_data::midog::MIDOG_JSON)),
        }
        .filter(|f| !f.is_file());
        let err = match absent {
            Some(f) => ParamError::missing_input(&[field], f, e),
            None => ParamError::new(&[field], e),
        };
        err.with_help(
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
        let ranges = midog_data::parse_id_ranges(&s.ids).map_err(|e| ParamError::new(&["scanners", name, "ids"], e))?;
        entries.extend(ranges.into_iter().map(|range| (range, scanner.clone())));
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
    let heldout_file = match (&p.heldout_labels, &p.synthetic) {
        (Some(h), _) => Some(ctx.params_dir.join(h)),
        (None, Some(_)) => Some(images_dir.join(midog_synth::HELDOUT_LABELS_FILE)).filter(|f| f.is_file()),
        (None, None) => None,
    };
    if let Some(file) = heldout_file {
        let heldout = load_heldout(&file, &manifest)?;
        let m: usize = heldout.images.iter().map(|i| i.mitoses.len()).sum();
        ctx.set_summary("heldout_images", heldout.images.len() as u64);
        ctx.set_summary("heldout_mitoses", m as u64);
        write_json(&ctx.out_dir().join(heldout::FILE), &heldout)?;
    }
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
        for r in &d.summary.renamings {
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
        for n in &d.summary.notes {
            tracing::warn!("{n}");
        }
    }
    let labelled = manifest.images.iter().filter(|i| i.labelled).count();
    if labelled > 0 && manifest.images.iter().all(|i| i.mitoses.is_empty()) {
        tracing::warn!(
            "none of the {labelled} labelled images has a mitotic figure (category 1): nothing can be \
             learnt or scored from this dataset; check the annotation file"
        );
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
/// file is named inside the root, exists and opens, every tile of it decodes, its size matches,
/// boxes lie inside, categories are known, every image has its domains. Every problem is
/// reported, not just the first.
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
    let names = file_name_problems(&midog, p.allow_outside_root);
    if !names.is_empty() {
        // Nothing is opened: a name outside the root is not read without the user's say.
        return Err(StageError::msg(problem_list(json, names)));
    }
    let mut problems: Vec<String> = midog.check(json);
    let table = load_table(files).map_err(StageError::domain)?;
    let domains = match domains_of(files, &midog, table.as_ref(), map, scanners_explicit(p)) {
        Ok(d) => Some(d),
        Err(e) => {
            problems.extend(e);
            None
        }
    };
    ctx.progress().start(midog.images.len() as u64, "opening images");
    let opened: Vec<Result<TiffImage, String>> = midog
        .images
        .par_iter()
        .map(|img| {
            // Tiles are decoded once each by the check below: a cache would only hold memory.
            let tiff = TiffImage::open_with_cache(dir.join(&img.file_name), Arc::new(TileCache::new(0)))
                .map_err(|e| format!("image {} ({}): {e}", img.id, img.file_name))?;
            ctx.progress().inc(1);
            Ok(tiff)
        })
        .collect();
    let decoded = verify_tiles(&midog, &opened, ctx)?;
    let checked: Vec<Result<ImageCheck, String>> = opened
        .into_iter()
        .zip(decoded)
        .map(|(tiff, decoded)| {
            let tiff = tiff?;
            decoded?;
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
        return Err(StageError::msg(problem_list(json, problems)));
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
    let summary = domains.summary;
    let multi = !summary.attributes.is_empty() || !summary.renamings.is_empty() || files.table.is_some();
    let info = multi.then(|| DomainsInfo { summary, official_sets: images.iter().any(|i| i.official_set.is_some()) });
    Ok(DatasetManifest { external_root, scanners, images, domains: info })
}

/// Reads held-out labels (MIDOG.json layout) and checks them against the dataset: every image
/// is in it, from an unlabelled scanner, and every box lies inside its image.
pub fn load_heldout(file: &Path, manifest: &DatasetManifest) -> Result<HeldoutLabels, StageError> {
    let midog = MidogJson::load(file).map_err(StageError::domain)?;
    let mut problems: Vec<String> = midog.check(file);
    let mut images = Vec::new();
    for entry in &midog.images {
        let Some(img) = manifest.image(entry.id) else {
            problems.push(format!("image {} ({}) is not in the dataset", entry.id, entry.file_name));
            continue;
        };
        if img.labelled {
            problems.push(format!(
                "image {} is from scanner {}, which is labelled: held-out labels are for unlabelled scanners only",
                entry.id, img.scanner
            ));
            continue;
        }
        let (mut mitoses, mut imposters) = (Vec::new(), Vec::new());
        for a in midog.annotations.iter().filter(|a| a.image_id == entry.id) {
            let b = a.bbox;
            if b[0] < 0.0 || b[1] < 0.0 || b[2] > f64::from(img.width) || b[3] > f64::from(img.height) {
                problems.push(format!("annotation {} of image {}: box {b:?} leaves the image", a.id, entry.id));
            }
            match Category::from_id(a.category_id) {
                Some(Category::Mitosis) => mitoses.push(b),
                Some(Category::Imposter) => imposters.push(b),
                None => {}
            }
        }
        images.push(HeldoutImage { id: entry.id, scanner: img.scanner.clone(), mitoses, imposters });
    }
    if !problems.is_empty() {
        let shown: Vec<String> = problems.iter().take(20).map(|p| format!("  - {p}")).collect();
        return Err(StageError::msg(format!(
            "{}: {} problem(s) with the held-out labels:\n{}",
            file.display(),
            problems.len(),
            shown.join("\n")
        )));
    }
    images.sort_by_key(|i| i.id);
    Ok(HeldoutLabels { images })
}

/// Bumped when the TIFF reader decodes differently, so files verified by an older reader are
/// decoded again.
const DECODE_CHECK_VERSION: u32 = 1;

/// Decodes every tile of every opened image once, in parallel with a progress bar in tiles, so
/// a corrupt tile fails here, naming the file, tile and byte offset, and not hours later in
/// training or inference (or never: a lenient decoder paints it grey). An image whose content
/// digest (from the key's external inputs) an earlier run verified is skipped, so a dataset
/// stage that reruns over the same files (another scanner table, say) decodes nothing again.
/// One result per image: `Err` holds the problem to report.
fn verify_tiles(
    midog: &MidogJson,
    opened: &[Result<TiffImage, String>],
    ctx: &StageContext,
) -> Result<Vec<Result<(), String>>, StageError> {
    let digests: BTreeMap<&str, &str> = ctx.external.iter().map(|e| (e.name.as_str(), e.digest.as_str())).collect();
    let memo = ctx.memo_dir().map(|d| d.join(format!("decoded-v{DECODE_CHECK_VERSION}")));
    let marker = |i: usize| -> Option<PathBuf> {
        let digest = digests.get(midog.images[i].file_name.as_str())?;
        Some(memo.as_ref()?.join(digest))
    };
    let todo: Vec<usize> =
        (0..opened.len()).filter(|&i| opened[i].is_ok() && !marker(i).is_some_and(|m| m.is_file())).collect();
    let tiles: usize = todo.iter().filter_map(|&i| opened[i].as_ref().ok()).map(TiffImage::chunk_total).sum();
    let known = opened.iter().filter(|o| o.is_ok()).count() - todo.len();
    ctx.progress().start(tiles as u64, "decoding every tile");
    let start = std::time::Instant::now();
    let results: Vec<(usize, Result<(), String>)> = todo
        .par_iter()
        .map(|&i| {
            ctx.check_cancelled()?;
            let Ok(tiff) = &opened[i] else { return Ok((i, Ok(()))) };
            let img = &midog.images[i];
            let checked = tiff
                .verify(&|| ctx.progress().inc(1))
                .map_err(|e| format!("image {} ({}): {e}", img.id, img.file_name));
            if checked.is_ok()
                && let Some(m) = marker(i)
            {
                // Best effort: a missing marker only means decoding again next time.
                let _ = m.parent().map(std::fs::create_dir_all);
                let _ = std::fs::write(&m, b"");
            }
            Ok((i, checked))
        })
        .collect::<Result<_, StageError>>()?;
    tracing::info!(
        "{known} of {} images already verified (same content digest); {} decoded ({tiles} tiles) in {:.2} s",
        opened.len(),
        todo.len(),
        start.elapsed().as_secs_f64()
    );
    let mut out: Vec<Result<(), String>> = (0..opened.len()).map(|_| Ok(())).collect();
    for (i, r) in results {
        out[i] = r;
    }
    Ok(out)
}

/// One message for every problem found (the first 20 shown).
fn problem_list(json: &Path, problems: Vec<String>) -> String {
    let n = problems.len();
    let shown: Vec<String> = problems.into_iter().take(20).map(|p| format!("  - {p}")).collect();
    format!(
        "{}: {n} problem{} with the dataset:\n{}{}",
        json.display(),
        if n == 1 { "" } else { "s" },
        shown.join("\n"),
        if n > 20 { format!("\n  … and {} more", n - 20) } else { String::new() }
    )
}

/// File names that would read outside `root` (absolute, or climbing with `..`) unless the user
/// opted in, empty names, and two images naming one file. Later stages derive output names
/// from image ids and sanitised stems, never from these names, so this guards reads only.
pub fn file_name_problems(midog: &MidogJson, allow_outside_root: bool) -> Vec<String> {
    use std::path::Component;
    let mut problems = Vec::new();
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    let opt_in = "set allow_outside_root = true in [stages.dataset] to read it where it is";
    for img in &midog.images {
        let name = img.file_name.as_str();
        let path = Path::new(name);
        if name.trim().is_empty() {
            problems.push(format!("image {}: file_name is empty", img.id));
            continue;
        }
        if let Some(first) = seen.insert(name, img.id) {
            problems.push(format!("images {first} and {} both name the file `{name}`", img.id));
        }
        if allow_outside_root {
            continue;
        }
        if path.is_absolute() {
            problems.push(format!(
                "image {}: file_name `{name}` is absolute; MIDOG.json names images relative to `root` \
                 (e.g. `001.tiff`): copy or link the files into `root`, or {opt_in}",
                img.id
            ));
        } else if path.components().any(|c| c == Component::ParentDir) {
            problems.push(format!("image {}: file_name `{name}` climbs out of `root` with `..`; {opt_in}", img.id));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

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
