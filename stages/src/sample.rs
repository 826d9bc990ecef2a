//! The sample stage: where training patches come from. It writes a deterministic plan
//! (`plan.json`) that expands into the patches of any epoch; its record states the fraction of
//! patches holding a mitotic figure. `balance = "tumor_type"` (or any domain attribute) gives
//! each of its values the same share of an epoch's patches, however many images it has.

use std::collections::BTreeMap;

use engine::{ParamError, StageContext, StageDef, StageError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifact::heldout::HeldoutLabels;
use crate::artifact::sample_plan::{self, PlanImage, Recipe, SamplePlan, Strategy};
use crate::artifact::{DatasetManifest, SplitSets, write_json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SampleParams {
    /// "random", "mitosis-centred" (reference recipe) or "hard-negative".
    pub strategy: Strategy,
    /// Patches drawn from each training image per epoch.
    pub patches_per_image: u32,
    /// Patch side in pixels.
    pub patch_size: u32,
    /// Seed of the patch positions (each epoch derives its own stream).
    pub seed: u64,
    /// mitosis-centred: probability that a patch holds a random mitotic figure of its image.
    pub p_object: f64,
    /// 0: the figure exactly centred; 1: anywhere inside the patch with its box whole.
    pub jitter: f64,
    /// hard-negative: probability of a patch around a mitotic figure.
    pub p_mitosis: f64,
    /// hard-negative: probability of a patch around a hard negative (the rest is random).
    pub p_imposter: f64,
    /// Uniformly random validation patches per validation image.
    pub val_patches_per_image: u32,
    /// A domain attribute ("tumor_type", "scanner", …) whose values share each epoch's patches
    /// equally (the epoch keeps its size: training images × patches_per_image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
}

impl Default for SampleParams {
    fn default() -> Self {
        SampleParams {
            strategy: Strategy::MitosisCentred,
            patches_per_image: 10,
            patch_size: 512,
            seed: 0,
            p_object: 0.5,
            jitter: 1.0,
            p_mitosis: 0.4,
            p_imposter: 0.3,
            val_patches_per_image: 10,
            balance: None,
        }
    }
}

pub struct SampleStage;

impl StageDef for SampleStage {
    type Params = SampleParams;
    const KIND: &'static str = "sample";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "training patch plan: random, mitosis-centred or hard-negative sampling";
    const NEEDS: &'static [&'static str] = &["split"];
    const REPLICATE_SEEDS: &'static [&'static str] = &["seed"];

    fn validate(p: &SampleParams) -> Result<(), ParamError> {
        let prob = |v: f64, name: &str| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(ParamError::new(&[name], "must be a probability in [0, 1]"))
            }
        };
        prob(p.p_object, "p_object")?;
        prob(p.jitter, "jitter")?;
        prob(p.p_mitosis, "p_mitosis")?;
        prob(p.p_imposter, "p_imposter")?;
        if p.p_mitosis + p.p_imposter > 1.0 {
            return Err(ParamError::new(
                &["p_imposter"],
                "p_mitosis + p_imposter must be at most 1 (the rest is random)",
            ));
        }
        if p.patch_size < 64 || !p.patch_size.is_multiple_of(32) {
            return Err(ParamError::new(
                &["patch_size"],
                "must be a multiple of 32, at least 64 (the backbone downsamples by 32)",
            ));
        }
        if p.patches_per_image == 0 {
            return Err(ParamError::new(&["patches_per_image"], "must be at least 1"));
        }
        if let Some(b) = &p.balance
            && midog_data::domain_names::attribute_name(b).is_none()
        {
            return Err(ParamError::new(&["balance"], format!("`{b}` is not a domain attribute"))
                .with_help("use scanner, tumor_type, species or origin"));
        }
        Ok(())
    }
}

pub fn run(p: &SampleParams, ctx: &StageContext) -> Result<(), StageError> {
    let split = SplitSets::load(ctx.input("split")?)?;
    let dataset_artifact = ctx.ancestor("dataset")?;
    let dataset = DatasetManifest::load(dataset_artifact)?;
    // Held-out labels are read only when the split trains on them (`heldout = "oracle"`).
    let oracle = split.train.iter().chain(&split.val).any(|id| split.heldout.contains(id));
    let heldout = if oracle { HeldoutLabels::load(dataset_artifact)? } else { HeldoutLabels::default() };
    let to_plan = |ids: &[u32]| -> Result<Vec<PlanImage>, StageError> {
        ids.iter()
            .map(|id| {
                let img = dataset.image(*id)?;
                let (mitoses, imposters) = if img.labelled {
                    (img.mitoses.clone(), img.imposters.clone())
                } else if let Some(h) = heldout.image(*id).filter(|_| split.heldout.contains(id)) {
                    (h.mitoses.clone(), h.imposters.clone())
                } else {
                    return Err(StageError::msg(format!(
                        "sample: image {id} (scanner {}) has no labels and cannot be trained or validated on",
                        img.scanner
                    )));
                };
                Ok(PlanImage { id: img.id, width: img.width, height: img.height, mitoses, imposters, patches: None })
            })
            .collect()
    };
    let mut train = to_plan(&split.train)?;
    if let Some(word) = &p.balance {
        let attr = midog_data::domain_names::attribute_name(word).unwrap_or("scanner");
        if !dataset.manifest.attributes().iter().any(|a| a == attr) {
            return Err(StageError::msg(format!(
                "sample.balance: the dataset has no {} (its domain attributes: {})",
                midog_data::domain_names::attribute_label(attr),
                dataset.manifest.attributes().join(", ")
            )));
        }
        let values: Vec<String> = split
            .train
            .iter()
            .map(|id| Ok(dataset.image(*id)?.domain(attr).unwrap_or_default().to_string()))
            .collect::<Result<_, StageError>>()?;
        let shares = balanced_patches(&values, p.patches_per_image);
        for (img, n) in train.iter_mut().zip(&shares) {
            img.patches = Some(*n);
        }
        let mut per: BTreeMap<&str, (usize, u32)> = BTreeMap::new();
        for (v, n) in values.iter().zip(&shares) {
            let e = per.entry(v.as_str()).or_default();
            e.0 += 1;
            e.1 += n;
        }
        for (v, (images, patches)) in &per {
            tracing::info!("balance by {attr}: {v}: {patches} patches per epoch from {images} images");
            ctx.set_summary(&format!("patches_{attr}={v}"), *patches as u64);
        }
    }
    let val = to_plan(&split.val)?;
    let val_patches = sample_plan::uniform_patches(&val, p.val_patches_per_image, p.patch_size, p.seed);
    let plan = SamplePlan {
        recipe: Recipe {
            strategy: p.strategy,
            patches_per_image: p.patches_per_image,
            patch_size: p.patch_size,
            seed: p.seed,
            p_object: p.p_object,
            jitter: p.jitter,
            p_mitosis: p.p_mitosis,
            p_imposter: p.p_imposter,
        },
        train,
        val,
        val_patches,
    };
    // The share of patches holding a mitotic figure, over the first ten epochs.
    let patches: Vec<_> = (0..10).flat_map(|e| plan.epoch(e)).collect();
    let share = plan.holding_fraction(&patches);
    let mut uniform = plan.clone();
    uniform.recipe.strategy = Strategy::Random;
    let uniform_patches: Vec<_> = (0..10).flat_map(|e| uniform.epoch(e)).collect();
    ctx.set_summary("mitosis_fraction", share);
    ctx.set_summary("mitosis_fraction_if_random", uniform.holding_fraction(&uniform_patches));
    ctx.set_summary("patches_per_epoch", plan.epoch(0).len() as u64);
    tracing::info!(
        "{} patches per epoch from {} training images; {:.1} % hold a mitotic figure ({:.1} % if random)",
        plan.epoch(0).len(),
        plan.train.len(),
        share * 100.0,
        uniform.holding_fraction(&uniform_patches) * 100.0
    );
    write_json(&ctx.out_dir().join(sample_plan::FILE), &plan)
}

/// Patches per epoch for each image (given its domain value) so that every value gets the same
/// share of `images × per_image` patches, spread evenly over its images; remainders go to the
/// first values and images in order, so the total is exact and the result deterministic.
pub fn balanced_patches(values: &[String], per_image: u32) -> Vec<u32> {
    let total = values.len() as u64 * per_image as u64;
    let mut distinct: Vec<&String> = values.iter().collect();
    distinct.sort();
    distinct.dedup();
    let d = distinct.len().max(1) as u64;
    let mut out = vec![0u32; values.len()];
    for (k, v) in distinct.iter().enumerate() {
        let quota = total / d + u64::from((k as u64) < total % d);
        let members: Vec<usize> = (0..values.len()).filter(|&i| &values[i] == *v).collect();
        let n = members.len() as u64;
        for (j, &i) in members.iter().enumerate() {
            out[i] = (quota / n + u64::from((j as u64) < quota % n)) as u32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_gets_an_equal_share_and_the_epoch_keeps_its_size() {
        let v: Vec<String> = ["a", "a", "a", "a", "a", "a", "b", "c", "c"].iter().map(|s| s.to_string()).collect();
        let p = balanced_patches(&v, 10);
        assert_eq!(p.iter().sum::<u32>(), 90);
        let share = |x: &str| v.iter().zip(&p).filter(|(a, _)| *a == x).map(|(_, n)| n).sum::<u32>();
        assert_eq!((share("a"), share("b"), share("c")), (30, 30, 30));
        assert_eq!(&p[..6], [5, 5, 5, 5, 5, 5]);
        assert_eq!(p[6], 30);
        // One domain: nothing changes.
        assert_eq!(balanced_patches(&v[..3], 7), [7, 7, 7]);
    }
}
