//! `pipeline export`: every run and variant of one or more experiments as one Parquet table:
//! a row per experiment, variant, score stage, split and scanner, with every stage parameter and
//! every swept key as columns, and the metrics with their bootstrap intervals (`f1_lo`, `f1_hi`,
//! …; null with `interval_note` saying why where a row has none).
//! Results of a dataset with more domain attributes (MIDOG++) add a row per split and value of
//! each (tumour type, species, origin lab), and the table then has `domain` (`scanner`,
//! `tumor_type`, …; `all` for the overall row) and `value` columns after `scanner`, which is
//! null in the rows of other attributes; a table of MIDOG 2021 results alone has neither.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use engine::cli::CacheArgs;
use engine::{Plan, Store};
use polars::prelude::*;
use serde_json::Value;

use crate::artifact::scores::RowOf;
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
    /// Which images the row holds (its `domain` and `value` columns in a multi-domain table).
    row: RowOf,
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
        ("scanner", if g.is_scanner_row() { Value::from(g.scanner.clone()) } else { Value::Null }),
        ("images", Value::from(g.images as u64)),
        ("tp", Value::from(g.tp)),
        ("fp", Value::from(g.fp)),
        ("fn", Value::from(g.fn_)),
        ("precision", Value::from(g.precision)),
        ("recall", Value::from(g.recall)),
        ("f1", Value::from(g.f1)),
        ("ap", g.ap.map(Value::from).unwrap_or(Value::Null)),
        ("interval_note", g.no_interval.clone().map(Value::from).unwrap_or(Value::Null)),
        ("threshold", Value::from(r.threshold)),
        ("key", Value::from(r.key.clone())),
    ] {
        cells.insert(k.to_string(), v);
    }
    for metric in ["f1", "precision", "recall"] {
        let i = g.interval(metric);
        cells.insert(format!("{metric}_lo"), i.map(|i| Value::from(i.lo)).unwrap_or(Value::Null));
        cells.insert(format!("{metric}_hi"), i.map(|i| Value::from(i.hi)).unwrap_or(Value::Null));
    }
    for (k, v) in r.swept {
        cells.insert(format!("sweep.{k}"), v);
    }
    for (k, v) in r.params {
        cells.insert(format!("param.{k}"), v);
    }
    Row { cells, row: g.row() }
}

/// Columns in a fixed order (identity, metrics, sweeps, params); each column typed by its values:
/// all numbers → float, all booleans → bool, anything else → string (lists as JSON).
fn to_frame(rows: &[Row]) -> Result<DataFrame> {
    let multi_domain = rows.iter().any(|r| !r.row.is_scanner_row());
    let filled: Vec<Row>;
    let rows = if multi_domain {
        filled = rows
            .iter()
            .map(|r| {
                let mut cells = r.cells.clone();
                cells.insert("domain".into(), Value::from(crate::score::domain_of(&r.row)));
                cells.insert("value".into(), Value::from(r.row.value.clone()));
                Row { cells, row: r.row.clone() }
            })
            .collect();
        &filled[..]
    } else {
        rows
    };
    const LEADING: [&str; 21] = [
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
        "f1_lo",
        "f1_hi",
        "precision_lo",
        "precision_hi",
        "recall_lo",
        "recall_hi",
        "interval_note",
        "ap",
        "threshold",
    ];
    let mut names: Vec<String> = LEADING.iter().map(|s| s.to_string()).collect();
    if multi_domain {
        names.splice(5..5, ["domain".to_string(), "value".to_string()]);
    }
    let mut rest: Vec<String> =
        rows.iter().flat_map(|r| r.cells.keys().cloned()).filter(|k| !names.contains(k)).collect();
    rest.sort_by_key(|k| (!k.starts_with("sweep."), k.clone()));
    rest.dedup();
    names.extend(rest);
    let mut columns = Vec::new();
    for name in &names {
        let values: Vec<&Value> = rows.iter().map(|r| r.cells.get(name).unwrap_or(&Value::Null)).collect();
        let non_null: Vec<&&Value> = values.iter().filter(|v| !v.is_null()).collect();
        // Metric columns stay numbers even when every row lacks the value (no intervals).
        let metric = LEADING[9..].contains(&name.as_str()) && name != "interval_note";
        let col = if metric || (!non_null.is_empty() && non_null.iter().all(|v| v.is_number())) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(row: RowOf) -> Row {
        let mut cells = BTreeMap::new();
        let scanner = if row.is_scanner_row() { Value::from(row.value.clone()) } else { Value::Null };
        cells.insert("scanner".to_string(), scanner);
        cells.insert("f1".to_string(), Value::from(0.5));
        cells.insert("param.score.radius_um".to_string(), Value::from(7.5));
        Row { cells, row }
    }

    #[test]
    fn domain_and_value_columns_only_with_rows_of_other_attributes() {
        let df = to_frame(&[row(RowOf::all()), row(RowOf::scanner("XR"))]).unwrap();
        let names = df.get_column_names().iter().map(|n| n.as_str()).collect::<Vec<_>>();
        assert_eq!(&names[3..6], ["split", "scanner", "images"]);
        assert!(!names.contains(&"domain") && !names.contains(&"value"));

        let tumour = RowOf { domain: "tumor_type".into(), value: "human melanoma".into() };
        let df = to_frame(&[row(RowOf::all()), row(RowOf::scanner("XR")), row(tumour)]).unwrap();
        let names = df.get_column_names().iter().map(|n| n.as_str()).collect::<Vec<_>>();
        assert_eq!(&names[3..8], ["split", "scanner", "domain", "value", "images"]);
        let col = |n: &str| df.column(n).unwrap().str().unwrap().iter().collect::<Vec<_>>();
        assert_eq!(col("domain"), [Some("all"), Some("scanner"), Some("tumor_type")]);
        assert_eq!(col("value"), [Some("all"), Some("XR"), Some("human melanoma")]);
        assert_eq!(col("scanner"), [Some("all"), Some("XR"), None]);
    }
}
