//! The split stage: which images train, validate and test.
//!
//! `preset = "midog-reference"` is the course's split done right: test = the 30 labelled images of
//! the reference validation list, train = the other 120 labelled images, and a validation part
//! carved from train, stratified by scanner. Unlabelled images (GT450) never enter training,
//! validation or scoring: as training images every mitosis in them would teach "background", as
//! test images every correct detection would count as a false positive.

use std::collections::{BTreeMap, BTreeSet};

use engine::{ParamError, StageContext, StageDef, StageError};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
            heldout: None,
            heldout_test_fraction: None,
        }
    }
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
    description.push_str(&format!(
        "; {} train, {} val, {} test, {} unlabelled kept out",
        train.len(),
        val.len(),
        test.len(),
        unlabelled.len()
    ));
    Ok(SplitSets { train, val, test, unlabelled, description, heldout: Vec::new() })
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
