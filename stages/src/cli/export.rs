//! `pipeline export`: every run and variant of one or more experiments as one Parquet table:
//! a row per experiment, variant, score stage, split and scanner, with every stage parameter and
//! every swept key as columns, and the metrics.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use engine::cli::CacheArgs;
use engine::{Plan, Store};
use polars::prelude::*;
use serde_json::Value;

use crate::results::ResultRow;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Experiment files.
    #[arg(required = true)]
    pub experiments: Vec<PathBuf>,
    /// Output Parquet file.
    #[arg(short, long, default_value = "results.parquet")]
    pub output: PathBuf,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// One exported row before it becomes columns.
struct Row {
    cells: BTreeMap<String, Value>,
}

pub fn run(a: ExportArgs, registry: &engine::Registry) -> Result<()> {
    let store = Store::open(&a.cache.cache_dir)?;
    let mut rows = Vec::new();
    for exp in &a.experiments {
        let plan = Plan::load(exp, registry, &store, &[], false)?;
        let (found, missing) = crate::results::collect(&plan, &store).map_err(|e| anyhow::anyhow!("{e}"))?;
        for m in &missing {
            eprintln!("warning: not run yet, left out: {m} (run the experiment first)");
        }
        rows.extend(found.into_iter().map(cells));
    }
    if rows.is_empty() {
        bail!("nothing to export: no score stage of these experiments has run");
    }
    let mut df = to_frame(&rows)?;
    crate::artifact::tables::write_parquet(&a.output, &mut df).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("wrote {} rows × {} columns to {}", df.height(), df.width(), a.output.display());
    Ok(())
}

fn cells(r: ResultRow) -> Row {
    let g = &r.group;
    let mut cells = BTreeMap::new();
    for (k, v) in [
        ("experiment", Value::from(r.experiment.clone())),
        ("variant", Value::from(r.variant.clone())),
        ("score_stage", Value::from(r.score_stage.clone())),
        ("split", Value::from(g.split.clone())),
        ("scanner", Value::from(g.scanner.clone())),
        ("images", Value::from(g.images as u64)),
        ("tp", Value::from(g.tp)),
        ("fp", Value::from(g.fp)),
        ("fn", Value::from(g.fn_)),
        ("precision", Value::from(g.precision)),
        ("recall", Value::from(g.recall)),
        ("f1", Value::from(g.f1)),
        ("ap", g.ap.map(Value::from).unwrap_or(Value::Null)),
        ("threshold", Value::from(r.threshold)),
        ("key", Value::from(r.key.clone())),
    ] {
        cells.insert(k.to_string(), v);
    }
    for (k, v) in r.swept {
        cells.insert(format!("sweep.{k}"), v);
    }
    for (k, v) in r.params {
        cells.insert(format!("param.{k}"), v);
    }
    Row { cells }
}

/// Columns in a fixed order (identity, metrics, sweeps, params); each column typed by its values:
/// all numbers → float, all booleans → bool, anything else → string (lists as JSON).
fn to_frame(rows: &[Row]) -> Result<DataFrame> {
    const LEADING: [&str; 14] = [
        "experiment",
        "variant",
        "score_stage",
        "split",
        "scanner",
        "images",
        "tp",
        "fp",
        "fn",
        "precision",
        "recall",
        "f1",
        "ap",
        "threshold",
    ];
    let mut names: Vec<String> = LEADING.iter().map(|s| s.to_string()).collect();
    let mut rest: Vec<String> =
        rows.iter().flat_map(|r| r.cells.keys().cloned()).filter(|k| !LEADING.contains(&k.as_str())).collect();
    rest.sort_by_key(|k| (!k.starts_with("sweep."), k.clone()));
    rest.dedup();
    names.extend(rest);
    let mut columns = Vec::new();
    for name in &names {
        let values: Vec<&Value> = rows.iter().map(|r| r.cells.get(name).unwrap_or(&Value::Null)).collect();
        let non_null: Vec<&&Value> = values.iter().filter(|v| !v.is_null()).collect();
        let col = if !non_null.is_empty() && non_null.iter().all(|v| v.is_number()) {
            if non_null.iter().all(|v| v.is_u64() || v.is_i64())
                && ["images", "tp", "fp", "fn"].contains(&name.as_str())
            {
                Column::new(name.into(), values.iter().map(|v| v.as_i64()).collect::<Vec<_>>())
            } else {
                Column::new(name.into(), values.iter().map(|v| v.as_f64()).collect::<Vec<_>>())
            }
        } else if !non_null.is_empty() && non_null.iter().all(|v| v.is_boolean()) {
            Column::new(name.into(), values.iter().map(|v| v.as_bool()).collect::<Vec<_>>())
        } else {
            Column::new(
                name.into(),
                values
                    .iter()
                    .map(|v| match v {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    })
                    .collect::<Vec<_>>(),
            )
        };
        columns.push(col);
    }
    Ok(DataFrame::new_infer_height(columns)?)
}
