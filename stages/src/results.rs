//! The results of an experiment's runs as rows: one per variant, score stage, split and scanner,
//! with the variant's swept values and every upstream stage parameter. `pipeline export` writes
//! them as Parquet; `pipeline compare` tabulates and plots them.

use std::collections::BTreeMap;
use std::sync::Arc;

use engine::{Plan, StageError, Store};
use serde_json::Value;

use crate::artifact::scores::{GroupScore, Scores};

#[derive(Debug, Clone)]
pub struct ResultRow {
    pub experiment: String,
    pub variant: String,
    pub score_stage: String,
    pub group: GroupScore,
    pub threshold: f64,
    /// Swept key (dotted, e.g. `stages.train.lr`) → value in this variant.
    pub swept: Vec<(String, Value)>,
    /// `stage.param` → value, for the score stage and all its upstream stages.
    pub params: BTreeMap<String, Value>,
    pub key: String,
    /// Everything the score stage wrote (per-image counts for paired comparisons).
    pub scores: Arc<Scores>,
}

/// Rows of every score stage that has run; the (variant, stage) pairs not run yet are returned
/// apart so callers can say so.
pub fn collect(plan: &Plan, store: &Store) -> Result<(Vec<ResultRow>, Vec<String>), StageError> {
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for vp in &plan.variants {
        for (name, stage) in vp.stages.iter().filter(|(_, s)| s.kind == "score") {
            if !store.has(&stage.key) {
                missing.push(format!("{} [{}] {name}", plan.experiment.name, vp.variant.name));
                continue;
            }
            let scores = Arc::new(Scores::load(&store.out_dir(&stage.key))?);
            let mut params = BTreeMap::new();
            for up in std::iter::once(name).chain(stage.ancestors.iter()) {
                flatten(&format!("{up}."), &vp.stages[up].params, &mut params);
            }
            let swept: Vec<(String, Value)> = vp
                .variant
                .swept
                .iter()
                .map(|s| (s.key.clone(), serde_json::to_value(&s.value).unwrap_or(Value::Null)))
                .collect();
            for g in &scores.groups {
                rows.push(ResultRow {
                    experiment: plan.experiment.name.clone(),
                    variant: vp.variant.name.clone(),
                    score_stage: name.clone(),
                    group: g.clone(),
                    threshold: scores.threshold,
                    swept: swept.clone(),
                    params: params.clone(),
                    key: stage.key.to_string(),
                    scores: scores.clone(),
                });
            }
        }
    }
    Ok((rows, missing))
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{prefix}{k}."), v, out);
            }
        }
        other => {
            out.insert(prefix.trim_end_matches('.').to_string(), other.clone());
        }
    }
}

/// A metric of a group by name (`f1`, `precision`, `recall`, `ap`).
pub fn metric(g: &GroupScore, name: &str) -> Option<f64> {
    match name {
        "f1" => Some(g.f1),
        "precision" => Some(g.precision),
        "recall" => Some(g.recall),
        "ap" => g.ap,
        _ => None,
    }
}
