//! The split stage: which images train, validate and test.
//!
//! `preset = "midog-reference"` is the course's split done right: test = the 30 labelled images of
//! the reference validation list, train = the other 120 labelled images, and a validation part
//! carved from train, stratified by scanner. Unlabelled images (GT450) never enter training,
//! validation or scoring: as training images every mitosis in them would teach "background", as
//! test images every correct detection would count as a false positive.
//!
//! `folds = K` makes it k-fold cross-validation: the training pool (everything that is not test)
//! is dealt into K folds stratified by scanner, fold `fold` validates and the others train; the
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

use crate::artifact::dataset_manifest::DatasetManifest;
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SplitParams {
    /// "midog-reference" (test = labelled reference validation ids), "stratified" or "explicit".
    pub preset: SplitPreset,
    /// Fraction of the training pool kept for validation, per scanner.
    pub val_fraction: f64,
    /// Test fraction per scanner for the `stratified` preset.
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
    /// Scanners left out of training and validation (still tested), e.g. ["S360"].
    pub leave_out: Vec<String>,
    /// k-fold cross-validation: deal the training pool into this many folds, stratified by
    /// scanner (validation = fold `fold`, training = the rest; `val_fraction` is not used).
    // Left out of the resolved params while unset, so splits without folds keep their keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folds: Option<u32>,
    /// The validation fold, 0 … folds − 1 (sweep it: "stages.split.fold" = [0, 1, 2, 3, 4]).
    #[serde(skip_serializing_if = "is_zero")]
    pub fold: u32,
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
            folds: None,
            fold: 0,
        }
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

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
        Ok(())
    }
}

pub fn run(p: &SplitParams, ctx: &StageContext) -> Result<(), StageError> {
    let dataset = DatasetManifest::load(ctx.input("dataset")?)?;
    let sets = split(p, &dataset.manifest)?;
    for (name, ids) in [("train", &sets.train), ("val", &sets.val), ("test", &sets.test)] {
        ctx.set_summary(&format!("{name}_images"), ids.len() as u64);
    }
    tracing::info!("{}", sets.description);
    write_json(&ctx.out_dir().join(split_sets::FILE), &sets)
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
    check_scanners("leave_out", &p.leave_out)?;

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
    let by_scanner = |ids: &[u32]| -> BTreeMap<String, Vec<u32>> {
        let mut m: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for id in ids {
            if let Some(img) = dataset.image(*id) {
                m.entry(img.scanner.clone()).or_default().push(*id);
            }
        }
        m
    };

    let (mut test, description): (Vec<u32>, String) = match (&p.test_ids, p.preset) {
        (Some(ids), _) => (ids.clone(), "explicit test ids".into()),
        (None, SplitPreset::MidogReference) => {
            let ids: Vec<u32> =
                labelled.iter().map(|i| i.id).filter(|id| MIDOG_REFERENCE_VALIDATION.contains(id)).collect();
            (ids, "MIDOG 2021 reference split: test = labelled reference validation ids".into())
        }
        (None, SplitPreset::Stratified) => {
            let mut test = Vec::new();
            for (_, mut ids) in by_scanner(&labelled.iter().map(|i| i.id).collect::<Vec<_>>()) {
                ids.shuffle(&mut rng);
                let n = ((ids.len() as f64 * p.test_fraction).round() as usize)
                    .clamp(usize::from(ids.len() > 1), ids.len());
                test.extend_from_slice(&ids[..n]);
            }
            (
                test,
                format!(
                    "stratified split: {:.0} % of each scanner's labelled images for test (seed {})",
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

    let allowed_for_training = |id: &u32| {
        let Some(img) = dataset.image(*id) else { return false };
        img.labelled
            && !p.leave_out.contains(&img.scanner)
            && p.train_scanners.as_ref().is_none_or(|s| s.contains(&img.scanner))
    };
    // Explicit ids are the user's word: one that leave_out or train_scanners excludes is a
    // contradiction to report, not an id to drop.
    for (field, ids) in [("train_ids", &p.train_ids), ("val_ids", &p.val_ids)] {
        for id in ids.iter().flatten() {
            let Some(img) = dataset.image(*id) else { continue };
            if p.leave_out.contains(&img.scanner) {
                return Err(StageError::msg(format!(
                    "split.{field}: image {id} is from scanner {}, which `leave_out` keeps out of training \
                     and validation; remove it from {field} or the scanner from leave_out",
                    img.scanner
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
                    for (_, mut ids) in by_scanner(&pool) {
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
    if !p.leave_out.is_empty() {
        description.push_str(&format!("; left out of training: {}", p.leave_out.join(", ")));
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
    Ok(SplitSets { train, val, test, unlabelled, description })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::DatasetImage;
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
                }
            })
            .collect();
        DatasetManifest { external_root: None, scanners: map.scanners().into_iter().cloned().collect(), images }
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
