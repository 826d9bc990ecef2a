//! The split stage: which images train, validate and test.
//!
//! `preset = "midog-reference"` is the course's split done right: test = the 30 labelled images of
//! the reference validation list, train = the other 120 labelled images, and a validation part
//! carved from train, stratified by scanner. `preset = "midogpp"` is the official MIDOG++
//! cross-validation split: test = the domain table's `test` rows, validation carved from its
//! `train` rows stratified by tumour type. Selections (`leave_out`, `train_domains`,
//! `test_domains`) and the stratification (`stratify`) take any domain attribute the dataset
//! has: leave out "human melanoma", train on "canine" only, stratify by tumour type and scanner.
//! Unlabelled images (GT450) never enter training, validation or scoring: as training images
//! every mitosis in them would teach "background", as test images every correct detection would
//! count as a false positive.
//!
//! `folds = K` makes it k-fold cross-validation: the training pool (everything that is not test)
//! is dealt into K folds stratified like the validation part
//! (`stratify`; scanner by default), fold `fold` validates and the others train; the
//! test set stays the same in every fold. Sweep the fold index to get all K models:
//!
//! ```toml
//! [stages.split]
//! folds = 5
//! [sweep]
//! "stages.split.fold" = [0, 1, 2, 3, 4]
//! ```

use std::collections::{BTreeMap, BTreeSet};

use engine::{ParamError, StageContext, StageDef, StageError};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use midog_data::OfficialSet;
use midog_data::domain_names::{SCANNER, TUMOR_TYPE, attribute_label, attribute_name, resolve_value};

use crate::artifact::DatasetImage;
use crate::artifact::dataset_manifest::DatasetManifest;
use crate::artifact::heldout::HeldoutLabels;
use crate::artifact::split_sets::{self, SplitSets};
use crate::artifact::write_json;

/// The MIDOG 2021 reference validation ids (10 per scanner; the GT450 ones are unlabelled).
pub const MIDOG_REFERENCE_VALIDATION: [u32; 40] = [
    2, 5, 10, 11, 24, 27, 32, 38, 46, 50, // Hamamatsu XR
    57, 58, 63, 65, 74, 83, 86, 91, 94, 100, // Hamamatsu S360
    106, 111, 114, 116, 117, 123, 134, 142, 145, 148, // Aperio CS2
    151, 159, 171, 172, 175, 178, 182, 184, 185, 188, // Leica GT450
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SplitPreset {
    /// Test = the labelled MIDOG reference validation ids present in the dataset.
    MidogReference,
    /// Test = a seeded `test_fraction` of each scanner's labelled images.
    Stratified,
    /// Only the explicit `train_ids` / `val_ids` / `test_ids`.
    Explicit,
    /// The domain table's official sets (MIDOG++'s datasets_xvalidation.csv): test = its `test`
    /// rows, the training pool its `train` rows; validation carved from the pool by tumour type.
    Midogpp,
}

/// What the split does with an unlabelled scanner's held-out labels (see `artifact::heldout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HeldoutUse {
    /// A seeded `heldout_test_fraction` of the held-out images becomes test images (scored with
    /// their held-out labels); the others stay unlabelled, for domain adaptation.
    Test,
    /// The same test images; the other held-out images train and validate with their labels:
    /// the upper bound of a domain-generalisation study.
    Oracle,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SplitParams {
    /// "midog-reference" (test = labelled reference validation ids), "stratified", "explicit"
    /// or "midogpp" (the domain table's official train/test sets).
    pub preset: SplitPreset,
    /// Fraction of the training pool kept for validation, per stratum (scanner by default).
    pub val_fraction: f64,
    /// Test fraction per stratum for the `stratified` preset.
    pub test_fraction: f64,
    /// Seed of the stratified choices.
    pub seed: u64,
    /// Explicit ids; each list given replaces that part of the preset.
    pub train_ids: Option<Vec<u32>>,
    pub val_ids: Option<Vec<u32>>,
    pub test_ids: Option<Vec<u32>>,
    /// Train and validate only on these scanners.
    pub train_scanners: Option<Vec<String>>,
    /// Test only on these scanners.
    pub test_scanners: Option<Vec<String>>,
    /// Domains left out of training and validation (still tested): scanners, tumour types or
    /// any attribute's values, e.g. ["S360"] or ["human melanoma"] (`attribute:value` where a
    /// value belongs to two attributes).
    pub leave_out: Vec<String>,
    /// Train and validate only on images of these domains (values of one attribute: any of
    /// them; of several attributes: each), e.g. ["canine"].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_domains: Option<Vec<String>>,
    /// Test only on images of these domains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_domains: Option<Vec<String>>,
    /// Attributes whose combinations the validation (and the stratified preset's test) share
    /// is drawn from evenly, e.g. ["tumor_type", "scanner"] (default: scanner; midogpp: tumour type).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stratify: Vec<String>,
    /// k-fold cross-validation: deal the training pool into this many folds, stratified like the
    /// validation part (validation = fold `fold`, training = the rest; `val_fraction` is not used).
    // Left out of the resolved params while unset, so splits without folds keep their keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folds: Option<u32>,
    /// The validation fold, 0 … folds − 1 (sweep it: "stages.split.fold" = [0, 1, 2, 3, 4]).
    #[serde(skip_serializing_if = "is_zero")]
    pub fold: u32,
    /// Use the dataset's held-out labels (a synthetic set's GT450): "test" (score on the held-out
    /// scanner) or "oracle" (also train on its other images). Absent: they stay unused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heldout: Option<HeldoutUse>,
    /// Share of each held-out scanner's images tested with `heldout` (default 0.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heldout_test_fraction: Option<f64>,
}

impl Default for SplitParams {
    fn default() -> Self {
        SplitParams {
            preset: SplitPreset::MidogReference,
            val_fraction: 0.2,
            test_fraction: 0.25,
            seed: 0,
            train_ids: None,
            val_ids: None,
            test_ids: None,
            train_scanners: None,
            test_scanners: None,
            leave_out: Vec::new(),
            train_domains: None,
            test_domains: None,
            stratify: Vec::new(),
            folds: None,
            fold: 0,
            heldout: None,
            heldout_test_fraction: None,
        }
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Default of `heldout_test_fraction`.
pub const HELDOUT_TEST_FRACTION: f64 = 0.5;

pub struct SplitStage;

impl StageDef for SplitStage {
    type Params = SplitParams;
    const KIND: &'static str = "split";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "train / validation / test image ids (MIDOG reference preset, stratified, explicit)";
    const NEEDS: &'static [&'static str] = &["dataset"];

    fn validate(p: &SplitParams) -> Result<(), ParamError> {
        if !(0.0..1.0).contains(&p.val_fraction) {
            return Err(ParamError::new(&["val_fraction"], "must be in [0, 1)"));
        }
        if !(0.0..1.0).contains(&p.test_fraction) {
            return Err(ParamError::new(&["test_fraction"], "must be in [0, 1)"));
        }
        if p.preset == SplitPreset::Explicit && (p.train_ids.is_none() || p.test_ids.is_none()) {
            return Err(ParamError::new(&["preset"], "the explicit preset needs `train_ids` and `test_ids`"));
        }
        for (i, a) in p.stratify.iter().enumerate() {
            if attribute_name(a).is_none() {
                return Err(ParamError::new(&["stratify"], format!("`{a}` is not a domain attribute"))
                    .with_help("use scanner, tumor_type, species or origin"));
            }
            if p.stratify[..i].iter().any(|b| attribute_name(b) == attribute_name(a)) {
                return Err(ParamError::new(&["stratify"], format!("`{a}` is listed twice")));
            }
        }
        match p.folds {
            Some(k) if k < 2 => {
                return Err(ParamError::new(
                    &["folds"],
                    format!("`folds = {k}`: cross-validation needs at least 2 folds (each trains on the others)"),
                )
                .with_help("folds = 5 is the usual choice; leave `folds` out for a plain validation fraction"));
            }
            Some(k) if p.fold >= k => {
                return Err(ParamError::new(
                    &["fold"],
                    format!("`fold = {}` does not exist: folds = {k} numbers its folds 0 to {}", p.fold, k - 1),
                ));
            }
            Some(_) if p.val_ids.is_some() => {
                return Err(ParamError::new(
                    &["folds"],
                    "set either `folds` or `val_ids`: the folds choose the validation images",
                ));
            }
            None if p.fold != 0 => {
                return Err(ParamError::new(
                    &["fold"],
                    format!("`fold = {}` needs `folds = K` (k-fold cross-validation)", p.fold),
                ));
            }
            _ => {}
        }
        if let Some(f) = p.heldout_test_fraction {
            if p.heldout.is_none() {
                return Err(ParamError::new(&["heldout_test_fraction"], "only applies with `heldout`"));
            }
            if !(f > 0.0 && f <= 1.0) {
                return Err(ParamError::new(&["heldout_test_fraction"], "must be in (0, 1]"));
            }
        }
        if p.heldout == Some(HeldoutUse::Oracle) && p.heldout_test_fraction == Some(1.0) {
            return Err(ParamError::new(
                &["heldout_test_fraction"],
                "the oracle needs held-out images left to train on (< 1)",
            ));
        }
        Ok(())
    }
}

pub fn run(p: &SplitParams, ctx: &StageContext) -> Result<(), StageError> {
    let artifact = ctx.input("dataset")?;
    let dataset = DatasetManifest::load(artifact)?;
    // Only the ids of the held-out images reach the split, never their labels.
    let heldout_ids = HeldoutLabels::load(artifact)?.ids();
    let sets = split_with_heldout(p, &dataset.manifest, &heldout_ids)?;
    for (name, ids) in [("train", &sets.train), ("val", &sets.val), ("test", &sets.test)] {
        ctx.set_summary(&format!("{name}_images"), ids.len() as u64);
    }
    tracing::info!("{}", sets.description);
    write_json(&ctx.out_dir().join(split_sets::FILE), &sets)
}

/// [`split`] with the ids of the images that have held-out labels: `p.heldout` moves some of them
/// into the test set (and, for the oracle, the others into training and validation).
pub fn split_with_heldout(
    p: &SplitParams,
    dataset: &DatasetManifest,
    heldout_ids: &[u32],
) -> Result<SplitSets, StageError> {
    let Some(mode) = p.heldout else { return split(p, dataset) };
    if heldout_ids.is_empty() {
        return Err(StageError::msg(
            "split.heldout: the dataset has no held-out labels (a synthetic set with GT450 has them; for real data set dataset.heldout_labels)",
        ));
    }
    let fraction = p.heldout_test_fraction.unwrap_or(HELDOUT_TEST_FRACTION);
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed ^ 0x0068_656c_646f_7574); // "heldout": its own stream
    let mut by_scanner: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for id in heldout_ids {
        let img = dataset
            .image(*id)
            .ok_or_else(|| StageError::msg(format!("split.heldout: held-out image {id} is not in the dataset")))?;
        by_scanner.entry(img.scanner.as_str()).or_default().push(*id);
    }
    let (mut heldout_test, mut heldout_train) = (Vec::new(), Vec::new());
    for (_, mut ids) in by_scanner {
        ids.sort();
        ids.shuffle(&mut rng);
        let n = ((ids.len() as f64 * fraction).round() as usize).clamp(1, ids.len());
        heldout_test.extend_from_slice(&ids[..n]);
        heldout_train.extend_from_slice(&ids[n..]);
    }
    let oracle = mode == HeldoutUse::Oracle;
    if oracle && heldout_train.is_empty() {
        return Err(StageError::msg(
            "split.heldout = \"oracle\": no held-out images left to train on; lower heldout_test_fraction",
        ));
    }
    // The labelled part as usual (the held-out images are unlabelled there), then the held-out part.
    let mut sets = split(p, dataset)?;
    sets.test.extend_from_slice(&heldout_test);
    sets.unlabelled.retain(|id| !(heldout_test.contains(id) || oracle && heldout_train.contains(id)));
    let mut used = heldout_test.clone();
    if oracle {
        // Carve validation from the held-out training images as from every other scanner.
        heldout_train.sort();
        heldout_train.shuffle(&mut rng);
        let n = if p.val_fraction > 0.0 {
            ((heldout_train.len() as f64 * p.val_fraction).round() as usize)
                .clamp(usize::from(heldout_train.len() > 1), heldout_train.len())
        } else {
            0
        };
        sets.val.extend_from_slice(&heldout_train[..n]);
        sets.train.extend_from_slice(&heldout_train[n..]);
        used.extend_from_slice(&heldout_train);
    }
    for list in [&mut sets.train, &mut sets.val, &mut sets.test, &mut used] {
        list.sort();
    }
    sets.description.push_str(&format!(
        "; held-out labels: {} test image(s){}",
        heldout_test.len(),
        if oracle { format!(", {} trained on (oracle)", heldout_train.len()) } else { String::new() }
    ));
    sets.heldout = used;
    Ok(sets)
}

/// Computes the split; every impossible request is an error saying why.
pub fn split(p: &SplitParams, dataset: &DatasetManifest) -> Result<SplitSets, StageError> {
    let known: BTreeSet<&str> = dataset.scanners.iter().map(|s| s.name.as_str()).collect();
    let check_scanners = |field: &str, names: &[String]| -> Result<(), StageError> {
        for n in names {
            let Some(s) = dataset.scanner(n) else {
                return Err(StageError::msg(format!(
                    "split.{field}: unknown scanner `{n}`; the dataset's scanners are {}",
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                )));
            };
            if field != "leave_out" && !s.labelled {
                return Err(StageError::msg(format!(
                    "split.{field}: scanner `{n}` has no labels; its images cannot train, validate or be scored (they are kept for unsupervised domain adaptation)"
                )));
            }
        }
        Ok(())
    };
    if let Some(s) = &p.train_scanners {
        check_scanners("train_scanners", s)?;
    }
    if let Some(s) = &p.test_scanners {
        check_scanners("test_scanners", s)?;
    }
    let domain_values = dataset.attribute_values();
    let resolve = |field: &str, words: &[String], labelled_only: bool| -> Result<Vec<(String, String)>, StageError> {
        words
            .iter()
            .map(|w| {
                let (attr, value) =
                    resolve_value(w, &domain_values).map_err(|e| StageError::msg(format!("split.{field}: {e}")))?;
                if labelled_only && !dataset.images.iter().any(|i| i.labelled && i.domain(&attr) == Some(value.as_str())) {
                    return Err(StageError::msg(format!(
                        "split.{field}: {} `{value}` has no labelled images; they cannot train, validate or be scored (unlabelled images are kept for unsupervised domain adaptation)",
                        attribute_label(&attr)
                    )));
                }
                Ok((attr, value))
            })
            .collect()
    };
    let leave_out = resolve("leave_out", &p.leave_out, false)?;
    let train_domains = p.train_domains.as_deref().map(|w| resolve("train_domains", w, true)).transpose()?;
    let test_domains = p.test_domains.as_deref().map(|w| resolve("test_domains", w, true)).transpose()?;
    if p.preset == SplitPreset::Midogpp
        && p.test_ids.is_none()
        && !dataset.images.iter().any(|i| i.official_set.is_some())
    {
        return Err(StageError::msg(
            "split: preset = \"midogpp\" needs the official sets of a domain table with a Dataset column: \
             set domains = \"datasets_xvalidation.csv\" in [stages.dataset] (relative to root)",
        ));
    }
    let strata: Vec<String> = if p.stratify.is_empty() {
        let default = if p.preset == SplitPreset::Midogpp { TUMOR_TYPE } else { SCANNER };
        vec![default.to_string()]
    } else {
        p.stratify.iter().filter_map(|a| attribute_name(a)).map(str::to_string).collect()
    };
    let attributes = dataset.attributes();
    if let Some(missing) = strata.iter().find(|a| !attributes.contains(a)) {
        return Err(StageError::msg(format!(
            "split.stratify: the dataset has no {} (its domain attributes: {}){}",
            attribute_label(missing),
            attributes.join(", "),
            if missing == TUMOR_TYPE {
                "; a dataset gets tumour types from MIDOG++.json or a domain table (dataset.domains)"
            } else {
                ""
            }
        )));
    }

    let labelled: Vec<&crate::artifact::DatasetImage> = dataset.images.iter().filter(|i| i.labelled).collect();
    let unlabelled: Vec<u32> = dataset.images.iter().filter(|i| !i.labelled).map(|i| i.id).collect();
    for (field, ids) in [("train_ids", &p.train_ids), ("val_ids", &p.val_ids), ("test_ids", &p.test_ids)] {
        for id in ids.iter().flatten() {
            match dataset.image(*id) {
                None => return Err(StageError::msg(format!("split.{field}: image id {id} is not in the dataset"))),
                Some(img) if !img.labelled => {
                    return Err(StageError::msg(format!(
                        "split.{field}: image {id} is from scanner {}, which has no labels. In training every mitosis in it would teach \"background\"; in testing every correct detection would count as a false positive. Keep unlabelled images for unsupervised domain adaptation.",
                        img.scanner
                    )));
                }
                _ => {}
            }
        }
    }

    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    // Strata in value order (with the default, scanners by name, as the split always was).
    let by_stratum = |ids: &[u32]| -> BTreeMap<Vec<String>, Vec<u32>> {
        let mut m: BTreeMap<Vec<String>, Vec<u32>> = BTreeMap::new();
        for id in ids {
            if let Some(img) = dataset.image(*id) {
                let key = strata.iter().map(|a| img.domain(a).unwrap_or_default().to_string()).collect();
                m.entry(key).or_default().push(*id);
            }
        }
        m
    };
    let strata_words = strata.iter().map(|a| attribute_label(a)).collect::<Vec<_>>().join(" × ");

    let (mut test, description): (Vec<u32>, String) = match (&p.test_ids, p.preset) {
        (Some(ids), _) => (ids.clone(), "explicit test ids".into()),
        (None, SplitPreset::MidogReference) => {
            let ids: Vec<u32> =
                labelled.iter().map(|i| i.id).filter(|id| MIDOG_REFERENCE_VALIDATION.contains(id)).collect();
            (ids, "MIDOG 2021 reference split: test = labelled reference validation ids".into())
        }
        (None, SplitPreset::Midogpp) => {
            let ids: Vec<u32> =
                labelled.iter().filter(|i| i.official_set == Some(OfficialSet::Test)).map(|i| i.id).collect();
            (ids, "MIDOG++ official split: test = the domain table's test rows".into())
        }
        (None, SplitPreset::Stratified) => {
            let mut test = Vec::new();
            for (_, mut ids) in by_stratum(&labelled.iter().map(|i| i.id).collect::<Vec<_>>()) {
                ids.shuffle(&mut rng);
                let n = ((ids.len() as f64 * p.test_fraction).round() as usize)
                    .clamp(usize::from(ids.len() > 1), ids.len());
                test.extend_from_slice(&ids[..n]);
            }
            (
                test,
                format!(
                    "stratified split: {:.0} % of each {strata_words}'s labelled images for test (seed {})",
                    p.test_fraction * 100.0,
                    p.seed
                ),
            )
        }
        (None, SplitPreset::Explicit) => unreachable!("validated"),
    };
    if let Some(scanners) = &p.test_scanners {
        test.retain(|id| dataset.image(*id).is_some_and(|i| scanners.contains(&i.scanner)));
    }
    if let Some(d) = &test_domains {
        test.retain(|id| dataset.image(*id).is_some_and(|i| in_every_attribute(i, d)));
    }

    let allowed_for_training = |id: &u32| {
        let Some(img) = dataset.image(*id) else { return false };
        img.labelled
            && !leave_out.iter().any(|(a, v)| img.domain(a) == Some(v.as_str()))
            && p.train_scanners.as_ref().is_none_or(|s| s.contains(&img.scanner))
            && train_domains.as_ref().is_none_or(|d| in_every_attribute(img, d))
    };
    // Explicit ids are the user's word: one that leave_out, train_scanners or train_domains
    // excludes is a contradiction to report, not an id to drop.
    for (field, ids) in [("train_ids", &p.train_ids), ("val_ids", &p.val_ids)] {
        for id in ids.iter().flatten() {
            let Some(img) = dataset.image(*id) else { continue };
            if let Some((attr, value)) = leave_out.iter().find(|(a, v)| img.domain(a) == Some(v.as_str())) {
                return Err(StageError::msg(format!(
                    "split.{field}: image {id} is from {} {value}, which `leave_out` keeps out of training \
                     and validation; remove it from {field} or {value} from leave_out",
                    attribute_label(attr)
                )));
            }
            if let Some(d) = &train_domains
                && !in_every_attribute(img, d)
            {
                return Err(StageError::msg(format!(
                    "split.{field}: image {id} is not in `train_domains` ({})",
                    d.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            if let Some(allowed) = &p.train_scanners
                && !allowed.contains(&img.scanner)
            {
                return Err(StageError::msg(format!(
                    "split.{field}: image {id} is from scanner {}, which is not in `train_scanners` ({})",
                    img.scanner,
                    allowed.join(", ")
                )));
            }
        }
    }
    let (mut train, val) = match (&p.train_ids, &p.val_ids) {
        (Some(t), Some(v)) => (t.clone(), v.clone()),
        (train_ids, val_ids) => {
            let pool: Vec<u32> = match train_ids {
                Some(t) => t.clone(),
                None => labelled.iter().map(|i| i.id).filter(|id| !test.contains(id)).collect(),
            };
            match val_ids {
                Some(v) => (pool.into_iter().filter(|id| !v.contains(id)).collect(), v.clone()),
                None => {
                    let pool: Vec<u32> = pool.into_iter().filter(|id| allowed_for_training(id)).collect();
                    let (mut train, mut val) = (Vec::new(), Vec::new());
                    for (_, mut ids) in by_stratum(&pool) {
                        ids.shuffle(&mut rng);
                        if let Some(k) = p.folds {
                            // Dealt round-robin after the same shuffle in every fold: the K
                            // validation parts are disjoint and cover the pool.
                            for (i, id) in ids.into_iter().enumerate() {
                                if i as u32 % k == p.fold { val.push(id) } else { train.push(id) }
                            }
                            continue;
                        }
                        let n = if p.val_fraction > 0.0 {
                            ((ids.len() as f64 * p.val_fraction).round() as usize)
                                .clamp(usize::from(ids.len() > 1), ids.len())
                        } else {
                            0
                        };
                        val.extend_from_slice(&ids[..n]);
                        train.extend_from_slice(&ids[n..]);
                    }
                    (train, val)
                }
            }
        }
    };
    train.retain(allowed_for_training);
    let mut val = val;
    val.retain(allowed_for_training);
    for (name, set) in [("train", &train), ("validation", &val)] {
        if let Some(id) = set.iter().find(|id| test.contains(id)) {
            return Err(StageError::msg(format!(
                "split: image {id} is in both {name} and test; a test image must never be seen before testing"
            )));
        }
    }
    if let Some(id) = train.iter().find(|id| val.contains(id)) {
        return Err(StageError::msg(format!("split: image {id} is in both train and validation")));
    }
    train.sort();
    val.sort();
    test.sort();
    if train.is_empty() {
        return Err(StageError::msg(
            "split: no training images left (check leave_out / train_scanners / the preset against the dataset)",
        ));
    }
    if test.is_empty() {
        return Err(StageError::msg(
            "split: no test images: the midog-reference preset tests on ids 002, 005, 010, …; a small synthetic set may not reach them; use preset = \"stratified\"",
        ));
    }
    let mut description = description;
    if !leave_out.is_empty() {
        let names: Vec<&str> = leave_out.iter().map(|(_, v)| v.as_str()).collect();
        description.push_str(&format!("; left out of training: {}", names.join(", ")));
    }
    if let Some(d) = &train_domains {
        description
            .push_str(&format!("; trained on {}", d.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" + ")));
    }
    if let Some(d) = &test_domains {
        description
            .push_str(&format!("; tested on {}", d.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" + ")));
    }
    if !p.stratify.is_empty() || p.preset == SplitPreset::Midogpp {
        description.push_str(&format!("; validation stratified by {strata_words}"));
    }
    if let Some(k) = p.folds {
        description.push_str(&format!("; cross-validation fold {} of {k} validates", p.fold));
    }
    description.push_str(&format!(
        "; {} train, {} val, {} test, {} unlabelled kept out",
        train.len(),
        val.len(),
        test.len(),
        unlabelled.len()
    ));
    Ok(SplitSets { train, val, test, unlabelled, description, heldout: Vec::new() })
}

/// Whether an image has, for every attribute among `domains`, one of the values listed for it.
fn in_every_attribute(img: &DatasetImage, domains: &[(String, String)]) -> bool {
    let attrs: BTreeSet<&str> = domains.iter().map(|(a, _)| a.as_str()).collect();
    attrs.into_iter().all(|a| domains.iter().any(|(da, v)| da == a && img.domain(a) == Some(v.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use midog_data::ScannerMap;

    fn midog_like() -> DatasetManifest {
        let map = ScannerMap::midog_2021();
        let images = (1..=200)
            .map(|id| {
                let s = map.scanner_of(id).unwrap();
                DatasetImage {
                    id,
                    file_name: format!("{id:03}.tiff"),
                    width: 1000,
                    height: 800,
                    scanner: s.name.clone(),
                    um_per_px: s.um_per_px,
                    labelled: s.labelled,
                    mitoses: vec![],
                    imposters: vec![],
                    domains: Default::default(),
                    official_set: None,
                }
            })
            .collect();
        DatasetManifest {
            external_root: None,
            scanners: map.scanners().into_iter().cloned().collect(),
            images,
            domains: None,
        }
    }

    #[test]
    fn reference_preset_reproduces_the_design_ids_and_keeps_gt450_out() {
        let d = midog_like();
        let s = split(&SplitParams::default(), &d).unwrap();
        let expected: Vec<u32> = MIDOG_REFERENCE_VALIDATION[..30].to_vec();
        assert_eq!(s.test, expected);
        assert_eq!(s.train.len() + s.val.len(), 120);
        assert_eq!(s.val.len(), 24, "20 % of 40 per scanner");
        for id in s.train.iter().chain(&s.val).chain(&s.test) {
            assert!(*id <= 150, "GT450 image {id} leaked into a supervised set");
        }
        assert_eq!(s.unlabelled, (151..=200).collect::<Vec<_>>());
        // Stratified validation: 8 per labelled scanner.
        for range in [1..=50, 51..=100, 101..=150] {
            assert_eq!(s.val.iter().filter(|id| range.contains(*id)).count(), 8);
        }
    }

    #[test]
    fn asking_for_unlabelled_images_is_an_error_that_says_why() {
        let d = midog_like();
        let p = SplitParams { test_ids: Some(vec![2, 155]), ..Default::default() };
        let e = split(&p, &d).unwrap_err().to_string();
        assert!(e.contains("155") && e.contains("no labels") && e.contains("background"), "{e}");
        let p = SplitParams { train_scanners: Some(vec!["GT450".into()]), ..Default::default() };
        assert!(split(&p, &d).unwrap_err().to_string().contains("no labels"));
    }

    #[test]
    fn leave_out_removes_a_scanner_from_training_only() {
        let d = midog_like();
        let p = SplitParams { leave_out: vec!["S360".into()], ..Default::default() };
        let s = split(&p, &d).unwrap();
        assert!(s.train.iter().chain(&s.val).all(|id| !(51..=100).contains(id)));
        assert!(s.test.iter().any(|id| (51..=100).contains(id)), "S360 is still tested");
    }

    /// A MIDOG++-like manifest: breast (XR 1–20, GT450 151–160 unlabelled), lymphosarcoma
    /// (3D Histech 245–256), melanoma (XR 505–516); every fourth labelled image officially test.
    fn midogpp_like() -> DatasetManifest {
        let mut images = Vec::new();
        let mut push = |id: u32, scanner: &str, tumour: &str, species: &str, labelled: bool| {
            let mut domains = BTreeMap::new();
            domains.insert("tumor_type".to_string(), tumour.to_string());
            domains.insert("species".to_string(), if labelled { species } else { "unknown" }.to_string());
            images.push(DatasetImage {
                id,
                file_name: format!("{id:03}.tiff"),
                width: 1000,
                height: 800,
                scanner: scanner.into(),
                um_per_px: 0.25,
                labelled,
                mitoses: vec![],
                imposters: vec![],
                domains,
                official_set: labelled.then_some(if id.is_multiple_of(4) {
                    OfficialSet::Test
                } else {
                    OfficialSet::Train
                }),
            });
        };
        for id in 1..=20 {
            push(id, "XR", "human breast cancer", "human", true);
        }
        for id in 151..=160 {
            push(id, "GT450", "human breast cancer", "human", false);
        }
        for id in 245..=256 {
            push(id, "3D Histech", "canine lymphosarcoma", "canine", true);
        }
        for id in 505..=516 {
            push(id, "XR", "human melanoma", "human", true);
        }
        let scanners = ["XR", "GT450", "3D Histech"]
            .iter()
            .map(|n| midog_data::Scanner {
                name: n.to_string(),
                model: n.to_string(),
                um_per_px: 0.25,
                labelled: *n != "GT450",
            })
            .collect();
        let domains = Some(crate::artifact::dataset_manifest::DomainsInfo {
            summary: midog_data::DomainSummary {
                attributes: vec!["tumor_type".into(), "species".into()],
                ..Default::default()
            },
            official_sets: true,
        });
        DatasetManifest { external_root: None, scanners, images, domains }
    }

    fn tumour_of(d: &DatasetManifest, id: u32) -> &str {
        d.image(id).unwrap().domain("tumor_type").unwrap()
    }

    #[test]
    fn midogpp_preset_tests_on_the_tables_test_rows_and_stratifies_validation_by_tumour_type() {
        let d = midogpp_like();
        let p = SplitParams { preset: SplitPreset::Midogpp, val_fraction: 0.25, ..Default::default() };
        let s = split(&p, &d).unwrap();
        let official: Vec<u32> =
            d.images.iter().filter(|i| i.official_set == Some(OfficialSet::Test)).map(|i| i.id).collect();
        assert_eq!(s.test, official);
        let mut pool: Vec<u32> = s.train.iter().chain(&s.val).copied().collect();
        pool.sort();
        let train_rows: Vec<u32> =
            d.images.iter().filter(|i| i.official_set == Some(OfficialSet::Train)).map(|i| i.id).collect();
        assert_eq!(pool, train_rows);
        assert_eq!(s.unlabelled, (151..=160).collect::<Vec<_>>());
        for t in ["human breast cancer", "canine lymphosarcoma", "human melanoma"] {
            let n = s.val.iter().filter(|id| tumour_of(&d, **id) == t).count();
            let of_type = train_rows.iter().filter(|id| tumour_of(&d, **id) == t).count();
            assert_eq!(n, (of_type as f64 * 0.25).round() as usize, "{t}: {s:?}");
        }
        assert!(s.description.contains("validation stratified by tumour type"), "{}", s.description);
        // Seeded and repeatable.
        assert_eq!(split(&p, &d).unwrap(), s);
    }

    #[test]
    fn any_attribute_can_be_left_out_or_chosen_for_training_or_testing() {
        let d = midogpp_like();
        let base = SplitParams { preset: SplitPreset::Midogpp, ..Default::default() };
        let p = SplitParams { leave_out: vec!["Human Melanoma".into()], ..base.clone() };
        let s = split(&p, &d).unwrap();
        assert!(s.train.iter().chain(&s.val).all(|id| tumour_of(&d, *id) != "human melanoma"));
        assert!(s.test.iter().any(|id| tumour_of(&d, *id) == "human melanoma"), "still tested");
        assert!(s.description.contains("left out of training: human melanoma"), "{}", s.description);

        let p = SplitParams { train_domains: Some(vec!["canine".into()]), ..base.clone() };
        let s = split(&p, &d).unwrap();
        assert!(s.train.iter().chain(&s.val).all(|id| (245..=256).contains(id)), "{s:?}");
        assert!(s.test.iter().any(|id| *id < 245), "all types still tested");

        // Two attributes: each must match (XR and breast cancer: not melanoma).
        let p = SplitParams {
            train_domains: Some(vec!["XR".into(), "human breast cancer".into()]),
            test_domains: Some(vec!["melanoma".into(), "human melanoma".into()].split_off(1)),
            ..base.clone()
        };
        let s = split(&p, &d).unwrap();
        assert!(s.train.iter().all(|id| *id <= 20), "{s:?}");
        assert!(s.test.iter().all(|id| *id >= 505), "{s:?}");

        let e = split(&SplitParams { leave_out: vec!["feline".into()], ..base.clone() }, &d).unwrap_err().to_string();
        assert!(e.contains("split.leave_out") && e.contains("none of the dataset's domains"), "{e}");
        let e = split(&SplitParams { train_domains: Some(vec!["GT450".into()]), ..base.clone() }, &d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no labelled images"), "{e}");
        let p = SplitParams { stratify: vec!["tumor_type".into(), "scanner".into()], ..base };
        assert!(split(&p, &d).unwrap().description.contains("tumour type × scanner"));
    }

    #[test]
    fn midog_2021_has_no_official_sets_or_tumour_types() {
        let d = midog_like();
        let e = split(&SplitParams { preset: SplitPreset::Midogpp, ..Default::default() }, &d).unwrap_err().to_string();
        assert!(e.contains("domains = \"datasets_xvalidation.csv\""), "{e}");
        let e = split(&SplitParams { stratify: vec!["tumour type".into()], ..Default::default() }, &d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no tumour type"), "{e}");
        // Scanner selections work as before, through the generic path too.
        let s = split(&SplitParams { leave_out: vec!["s360".into()], ..Default::default() }, &d).unwrap();
        assert!(s.train.iter().all(|id| !(51..=100).contains(id)));
    }

    #[test]
    fn folds_partition_the_training_pool_and_keep_the_test_set() {
        let d = midog_like();
        let base = SplitParams { folds: Some(5), ..Default::default() };
        let splits: Vec<SplitSets> =
            (0..5).map(|fold| split(&SplitParams { fold, ..base.clone() }, &d).unwrap()).collect();
        let pool: BTreeSet<u32> = splits[0].train.iter().chain(&splits[0].val).copied().collect();
        assert_eq!(pool.len(), 120);
        let mut seen = BTreeSet::new();
        for s in &splits {
            assert_eq!(s.test, splits[0].test, "the test set is the same in every fold");
            assert!(s.val.iter().all(|id| seen.insert(*id)), "validation folds overlap");
            assert_eq!(s.train.len() + s.val.len(), 120);
            // Stratified: 8 of each labelled scanner's 40 pool images per fold.
            for range in [1..=50, 51..=100, 101..=150] {
                assert_eq!(s.val.iter().filter(|id| range.contains(*id)).count(), 8);
            }
        }
        assert_eq!(seen, pool, "the folds cover the pool");
    }

    #[test]
    fn splits_without_folds_keep_their_params_and_key() {
        let resolved = crate::registry().get("split").unwrap().resolve(&toml::Table::new()).unwrap();
        let keys: Vec<&str> = resolved.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(!keys.contains(&"folds") && !keys.contains(&"fold"), "{keys:?}");
    }

    #[test]
    fn bad_folds_name_the_key() {
        let check = |p: SplitParams| SplitStage::validate(&p).unwrap_err();
        let e = check(SplitParams { folds: Some(1), ..Default::default() });
        assert_eq!(e.path, ["folds"]);
        assert!(e.message.contains("at least 2 folds"), "{e}");
        let e = check(SplitParams { folds: Some(5), fold: 5, ..Default::default() });
        assert_eq!(e.path, ["fold"]);
        assert!(e.message.contains("0 to 4"), "{e}");
        let e = check(SplitParams { fold: 2, ..Default::default() });
        assert!(e.message.contains("needs `folds = K`"), "{e}");
        assert!(SplitStage::validate(&SplitParams { folds: Some(5), fold: 4, ..Default::default() }).is_ok());
    }

    #[test]
    fn heldout_test_and_oracle_share_their_test_images() {
        let d = midog_like();
        let heldout: Vec<u32> = (151..=200).collect();
        let test = SplitParams { heldout: Some(HeldoutUse::Test), ..Default::default() };
        let t = split_with_heldout(&test, &d, &heldout).unwrap();
        let plain = split(&SplitParams::default(), &d).unwrap();
        let gt450_test: Vec<u32> = t.test.iter().copied().filter(|id| *id > 150).collect();
        assert_eq!(gt450_test.len(), 25, "half of the held-out scanner is tested");
        assert_eq!(
            (t.train.clone(), t.val.clone()),
            (plain.train.clone(), plain.val.clone()),
            "labelled part unchanged"
        );
        assert!(t.train.iter().chain(&t.val).all(|id| *id <= 150), "held-out images never train in test mode");
        assert_eq!(t.heldout, gt450_test, "only the test images' held-out labels are used");
        assert!(t.unlabelled.iter().all(|id| !gt450_test.contains(id)) && t.unlabelled.len() == 25);

        let oracle = SplitParams { heldout: Some(HeldoutUse::Oracle), ..Default::default() };
        let o = split_with_heldout(&oracle, &d, &heldout).unwrap();
        assert_eq!(o.test, t.test, "the oracle is tested on the same images");
        let trained: Vec<u32> = o.train.iter().chain(&o.val).copied().filter(|id| *id > 150).collect();
        assert_eq!(trained.len(), 25);
        assert_eq!(o.val.iter().filter(|id| **id > 150).count(), 5, "validation carved from GT450 too");
        assert!(o.unlabelled.is_empty() && o.heldout.len() == 50);

        let none = split_with_heldout(&test, &d, &[]).unwrap_err().to_string();
        assert!(none.contains("no held-out labels"), "{none}");
        let p = SplitParams { heldout_test_fraction: Some(0.3), ..Default::default() };
        assert!(SplitStage::validate(&p).unwrap_err().message.contains("only applies"));
    }

    #[test]
    fn explicit_ids_of_an_excluded_scanner_are_an_error_not_dropped() {
        let d = midog_like();
        let p = SplitParams {
            leave_out: vec!["S360".into()],
            train_ids: Some(vec![1, 3, 57]),
            val_ids: Some(vec![4]),
            ..Default::default()
        };
        let e = split(&p, &d).unwrap_err().to_string();
        assert!(e.contains("train_ids") && e.contains("57") && e.contains("leave_out"), "{e}");
        let p = SplitParams { leave_out: vec!["S360".into()], val_ids: Some(vec![3, 60]), ..Default::default() };
        let e = split(&p, &d).unwrap_err().to_string();
        assert!(e.contains("val_ids") && e.contains("60"), "{e}");
        let p = SplitParams { train_scanners: Some(vec!["XR".into()]), val_ids: Some(vec![101]), ..Default::default() };
        let e = split(&p, &d).unwrap_err().to_string();
        assert!(e.contains("101") && e.contains("train_scanners"), "{e}");
    }

    #[test]
    fn validation_and_test_must_be_disjoint() {
        let d = midog_like();
        // 2 is a reference test id.
        let p = SplitParams { val_ids: Some(vec![1, 2]), ..Default::default() };
        let e = split(&p, &d).unwrap_err().to_string();
        assert!(e.contains("image 2 is in both validation and test"), "{e}");
        let p = SplitParams {
            preset: SplitPreset::Explicit,
            train_ids: Some(vec![1, 3]),
            val_ids: Some(vec![3]),
            test_ids: Some(vec![4]),
            ..Default::default()
        };
        assert!(split(&p, &d).unwrap_err().to_string().contains("train and validation"));
    }

    #[test]
    fn stratified_preset_is_seeded() {
        let d = midog_like();
        let p = SplitParams { preset: SplitPreset::Stratified, seed: 3, ..Default::default() };
        assert_eq!(split(&p, &d).unwrap(), split(&p, &d).unwrap());
        let q = SplitParams { seed: 4, ..p.clone() };
        assert_ne!(split(&p, &d).unwrap().test, split(&q, &d).unwrap().test);
        assert_eq!(split(&p, &d).unwrap().test.len(), 3 * 13);
    }
}
