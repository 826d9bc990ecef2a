//! Which differences between models the data supports: models (one score stage's results, or the
//! replicates of one recipe pooled), their aggregate per row — each scanner, each value of every
//! other domain attribute such as the tumour type, and all images — (mean ± sd across replicates and
//! the pooled interval), and paired bootstrap differences of F1 between two models on the same
//! images (`midog_eval::bootstrap`). `pipeline compare` presents them.

use std::sync::Arc;

use midog_eval::{Bootstrap, Counts, Interval, NoInterval, PairedDifference};

use crate::artifact::scores::{RowOf, Scores, row_stream};

/// The swept key of replicates (`[sweep] replicates = N`): variants that differ only in it are
/// one recipe trained with several seeds.
pub use engine::spec::REPLICATE_AXIS;

/// One model of a comparison: a score stage's results in one variant, or those of every
/// replicate (seed) of one recipe.
#[derive(Debug, Clone)]
pub struct Model {
    /// How tables name it: the variant (without the replicate), or the score stage.
    pub label: String,
    pub score_stage: String,
    /// Each replicate's scores (one without replicates).
    pub replicates: Vec<Arc<Scores>>,
}

/// A model's F1 on one row (split × scanner, split × tumour type, …) across its replicates.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub row: RowOf,
    /// F1 of each replicate.
    pub f1: Vec<f64>,
    pub mean: f64,
    /// Sample standard deviation across replicates (`None` with one).
    pub sd: Option<f64>,
    /// The two-level bootstrap interval of the mean (images and replicates resampled).
    pub pooled: Result<Interval, NoInterval>,
}

/// The paired comparison of two models on one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    pub row: RowOf,
    pub images: usize,
    pub result: Result<PairedDifference, NoInterval>,
}

/// Per-replicate, per-image counts of a model on a row, with the image ids they belong to (every
/// replicate must list the same images).
fn side(m: &Model, split: &str, row: &RowOf) -> Result<(Vec<u32>, Vec<Vec<Counts>>), NoInterval> {
    let mut ids: Option<Vec<u32>> = None;
    let mut out = Vec::new();
    for r in &m.replicates {
        let rows = r.image_counts(split, row);
        let these: Vec<u32> = rows.iter().map(|(id, _)| *id).collect();
        match &ids {
            None => ids = Some(these),
            Some(first) if *first != these => {
                return Err(NoInterval::DifferentImages { a: first.len(), b: these.len() });
            }
            Some(_) => {}
        }
        out.push(rows.into_iter().map(|(_, c)| c).collect());
    }
    Ok((ids.unwrap_or_default(), out))
}

/// Mean ± sd of F1 across a model's replicates and its pooled interval, on one row.
pub fn aggregate(m: &Model, split: &str, row: &RowOf, plan: &Bootstrap) -> Option<Aggregate> {
    let f1: Vec<f64> = m.replicates.iter().filter_map(|r| r.row(split, row).map(|g| g.f1)).collect();
    if f1.is_empty() {
        return None;
    }
    let mean = f1.iter().sum::<f64>() / f1.len() as f64;
    let sd = (f1.len() > 1).then(|| {
        let ss: f64 = f1.iter().map(|v| (v - mean).powi(2)).sum();
        (ss / (f1.len() - 1) as f64).sqrt()
    });
    // One replicate: the score stage's own interval (the same resampling with its defaults).
    let stored = match m.replicates.as_slice() {
        [one] => one.row(split, row).and_then(|g| g.interval("f1")),
        _ => None,
    };
    let pooled = match stored {
        Some(i) => Ok(i),
        None => side(m, split, row).and_then(|(_, s)| plan.mean_f1_interval(&s, row_stream(split, row))),
    };
    Some(Aggregate { row: row.clone(), f1, mean, sd, pooled })
}

/// The paired F1 difference `a − b` on one row; models scored on different images are not
/// compared (the result says so).
pub fn pair(models: &[Model], a: usize, b: usize, split: &str, row: &RowOf, plan: &Bootstrap) -> Pair {
    let result = (|| {
        let (ids_a, side_a) = side(&models[a], split, row)?;
        let (ids_b, side_b) = side(&models[b], split, row)?;
        if ids_a != ids_b {
            return Err(NoInterval::DifferentImages { a: ids_a.len(), b: ids_b.len() });
        }
        plan.paired_f1_difference(&side_a, &side_b, row_stream(split, row))
    })();
    let images = side(&models[a], split, row).map(|(ids, _)| ids.len()).unwrap_or(0);
    Pair { a, b, row: row.clone(), images, result }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::scores::{GroupScore, ImageScore};

    fn scores(per_image: &[(u32, &str, Counts)]) -> Arc<Scores> {
        let images: Vec<ImageScore> = per_image
            .iter()
            .map(|(id, scanner, c)| ImageScore {
                id: *id,
                file_name: format!("{id:03}.tiff"),
                split: "test".into(),
                scanner: scanner.to_string(),
                um_per_px: 0.25,
                tp: c.tp,
                fp: c.fp,
                fn_: c.fn_,
                domains: std::collections::BTreeMap::from([(
                    "tumor_type".to_string(),
                    if id % 2 == 0 { "canine lymphosarcoma" } else { "human melanoma" }.to_string(),
                )]),
                ground_truth: vec![],
                detections: vec![],
            })
            .collect();
        let group = |scanner: &str| {
            let c: Counts = per_image.iter().filter(|(_, s, _)| scanner == "all" || *s == scanner).map(|t| t.2).sum();
            GroupScore::from_counts("test", &RowOf::scanner(scanner), 0, c)
        };
        Arc::new(Scores {
            threshold: 0.5,
            threshold_rule: "fixed".into(),
            val_f1: None,
            radius_um: 7.5,
            bootstrap: None,
            groups: vec![group("all"), group("XR")],
            images,
        })
    }

    fn model(label: &str, replicates: Vec<Arc<Scores>>) -> Model {
        Model { label: label.into(), score_stage: "score".into(), replicates }
    }

    #[test]
    fn a_model_against_itself_and_against_a_worse_one() {
        let good: Vec<(u32, &str, Counts)> = (1..=40).map(|i| (i, "XR", Counts::new(4, 1, 1))).collect();
        let worse: Vec<(u32, &str, Counts)> = good
            .iter()
            .map(|&(i, s, c)| (i, s, if i % 2 == 0 { Counts::new(c.tp - 1, c.fp + 1, c.fn_ + 1) } else { c }))
            .collect();
        let models = vec![model("good", vec![scores(&good)]), model("worse", vec![scores(&worse)])];
        let plan = Bootstrap::default();
        let same = pair(&[models[0].clone(), models[0].clone()], 0, 1, "test", &RowOf::all(), &plan);
        let d = same.result.unwrap();
        assert_eq!((d.difference, d.interval), (0.0, Interval { lo: 0.0, hi: 0.0 }));
        let p = pair(&models, 0, 1, "test", &RowOf::scanner("XR"), &plan);
        assert_eq!(p.images, 40);
        assert!(p.result.unwrap().supported());
        // Per tumour type: the even ids (every one of them worse in `worse`) and the odd ones
        // (the same in both, so exactly 0 in every resample).
        let lymph = RowOf { domain: "tumor_type".into(), value: "canine lymphosarcoma".into() };
        let melanoma = RowOf { domain: "tumor_type".into(), value: "human melanoma".into() };
        let p = pair(&models, 0, 1, "test", &lymph, &plan);
        assert_eq!(p.images, 20);
        let d = p.result.unwrap();
        assert!(d.supported() && d.difference > 0.0, "{d:?}");
        let d = pair(&models, 0, 1, "test", &melanoma, &plan).result.unwrap();
        assert_eq!((d.difference, d.interval), (0.0, Interval { lo: 0.0, hi: 0.0 }));
    }

    #[test]
    fn models_on_different_images_are_not_compared() {
        let a: Vec<(u32, &str, Counts)> = (1..=5).map(|i| (i, "XR", Counts::new(1, 1, 1))).collect();
        let b: Vec<(u32, &str, Counts)> = (2..=6).map(|i| (i, "XR", Counts::new(1, 1, 1))).collect();
        let models = vec![model("a", vec![scores(&a)]), model("b", vec![scores(&b)])];
        let p = pair(&models, 0, 1, "test", &RowOf::all(), &Bootstrap::default());
        assert_eq!(p.result, Err(NoInterval::DifferentImages { a: 5, b: 5 }));
    }

    #[test]
    fn replicates_aggregate_to_mean_sd_and_a_pooled_interval() {
        let rep =
            |tp: u64| scores(&(1..=30).map(|i| (i, "XR", Counts::new(tp + i as u64 % 2, 2, 2))).collect::<Vec<_>>());
        let m = model("recipe", vec![rep(2), rep(3), rep(4)]);
        let a = aggregate(&m, "test", &RowOf::all(), &Bootstrap::default()).unwrap();
        assert_eq!(a.f1.len(), 3);
        assert!((a.mean - a.f1.iter().sum::<f64>() / 3.0).abs() < 1e-15);
        assert!(a.sd.unwrap() > 0.0);
        let pooled = a.pooled.unwrap();
        assert!(pooled.contains(a.mean), "{pooled:?} {}", a.mean);
        let one = aggregate(&model("one", vec![rep(3)]), "test", &RowOf::all(), &Bootstrap::default()).unwrap();
        assert_eq!(one.sd, None);
    }
}
