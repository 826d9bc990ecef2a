//! `pipeline compare`: each metric against each swept key, per scanner — a table in the terminal
//! and PNG charts — so a sweep answers its question at a glance. Experiments without a sweep but
//! with several score stages (branches) are compared stage by stage.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use engine::cli::CacheArgs;
use engine::{Plan, Store};
use plot::{BarChart, LegendPosition, LineChart};
use serde_json::Value;

use crate::results::{ResultRow, collect, metric};

/// A metric's values per scanner (one per variant run with the same swept value).
type PerScanner = BTreeMap<String, Vec<f64>>;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The experiment (with a [sweep] or several score stages).
    pub experiment: PathBuf,
    /// f1, precision, recall or ap.
    #[arg(long, default_value = "f1")]
    pub metric: String,
    /// test or val.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Where the charts go (default: compare-<experiment name>/).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub cache: CacheArgs,
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => {
            n.as_f64().map(|f| engine::spec::display_value(&toml::Value::Float(f))).unwrap_or(n.to_string())
        }
        other => other.to_string(),
    }
}

pub fn run(a: CompareArgs, registry: &engine::Registry) -> Result<()> {
    if !["f1", "precision", "recall", "ap"].contains(&a.metric.as_str()) {
        bail!("--metric {}: use f1, precision, recall or ap", a.metric);
    }
    let store = Store::open(&a.cache.cache_dir)?;
    let plan = Plan::load(&a.experiment, registry, &store, &[], false)?;
    let (rows, missing) = collect(&plan, &store).map_err(|e| anyhow::anyhow!("{e}"))?;
    for m in &missing {
        eprintln!("warning: not run yet: {m} (run the experiment first)");
    }
    let rows: Vec<&ResultRow> = rows.iter().filter(|r| r.group.split == a.split).collect();
    if rows.is_empty() {
        bail!("no {} results yet: run `pipeline run {}` first", a.split, a.experiment.display());
    }
    let out = a.output.clone().unwrap_or_else(|| PathBuf::from(format!("compare-{}", plan.experiment.name)));
    std::fs::create_dir_all(&out)?;
    let mut scanners: Vec<String> = rows.iter().map(|r| r.group.scanner.clone()).collect();
    scanners.sort();
    scanners.dedup();
    if let Some(i) = scanners.iter().position(|s| s == "all") {
        let all = scanners.remove(i);
        scanners.push(all);
    }
    let swept_keys: Vec<String> =
        rows.first().map(|r| r.swept.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();

    // Variants in the order the experiment declares them (named variants tell a story in order).
    let rank = |variant: &str| plan.variants.iter().position(|v| v.variant.name == variant).unwrap_or(usize::MAX);

    // The table: one line per variant and score stage.
    let mut lines: BTreeMap<(usize, String, String), BTreeMap<String, f64>> = BTreeMap::new();
    let mut swept_of: BTreeMap<(usize, String, String), Vec<(String, Value)>> = BTreeMap::new();
    for r in &rows {
        let id = (rank(&r.variant), r.variant.clone(), r.score_stage.clone());
        if let Some(v) = metric(&r.group, &a.metric) {
            lines.entry(id.clone()).or_default().insert(r.group.scanner.clone(), v);
        }
        swept_of.insert(id, r.swept.clone());
    }
    let several_stages = rows.iter().any(|r| r.score_stage != rows[0].score_stage);
    let mut header: Vec<String> = swept_keys.iter().map(|k| k.rsplit('.').next().unwrap_or(k).to_string()).collect();
    if swept_keys.is_empty() {
        header.push("variant".into());
    }
    if several_stages {
        header.push("score stage".into());
    }
    header.extend(scanners.iter().map(|s| format!("{} {}", a.metric, s)));
    let table: Vec<Vec<String>> = lines
        .iter()
        .map(|(id, values)| {
            let (_, variant, stage) = id;
            let mut row: Vec<String> = swept_of[id].iter().map(|(_, v)| show(v)).collect();
            if swept_keys.is_empty() {
                row.push(variant.clone());
            }
            if several_stages {
                row.push(stage.clone());
            }
            row.extend(scanners.iter().map(|s| values.get(s).map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into())));
            row
        })
        .collect();
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    println!(
        "{} ({} images, {})\n{}",
        plan.experiment.name,
        a.split,
        a.metric,
        engine::progress::table(&header_refs, &table)
    );

    // One chart per swept key (and score stage): the metric, as the mean over the other swept
    // keys' values, per scanner.
    let mut charts = Vec::new();
    let mut stages: Vec<String> = rows.iter().map(|r| r.score_stage.clone()).collect();
    stages.sort();
    stages.dedup();
    for (key, stage) in swept_keys.iter().flat_map(|k| stages.iter().map(move |s| (k, s))) {
        let mut by_value: BTreeMap<String, (Value, PerScanner)> = BTreeMap::new();
        // Bar groups in the order their values first appear among the declared variants.
        let mut group_order: Vec<(usize, String)> = Vec::new();
        for r in rows.iter().filter(|r| &r.score_stage == stage) {
            let Some(v) = r.swept.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()) else { continue };
            let Some(m) = metric(&r.group, &a.metric) else { continue };
            group_order.push((rank(&r.variant), show(&v)));
            by_value
                .entry(show(&v))
                .or_insert_with(|| (v.clone(), BTreeMap::new()))
                .1
                .entry(r.group.scanner.clone())
                .or_default()
                .push(m);
        }
        let label = key.rsplit('.').next().unwrap_or(key).to_string();
        let (file, title) = if stages.len() > 1 {
            (
                out.join(format!("{}_by_{label}_{stage}.png", a.metric)),
                format!("{} {} by {label} ({stage})", a.split, a.metric),
            )
        } else {
            (out.join(format!("{}_by_{label}.png", a.metric)), format!("{} {} by {label}", a.split, a.metric))
        };
        let numeric: Option<Vec<(f64, &PerScanner)>> =
            by_value.values().map(|(v, m)| v.as_f64().map(|x| (x, m))).collect();
        let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
        match numeric {
            Some(mut points) if points.len() > 1 => {
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                let (lo, hi) = (points[0].0, points[points.len() - 1].0);
                let mut chart = LineChart::new(&title)
                    .x_label(&label)
                    .y_label(&a.metric)
                    .y_range(0.0, 1.02)
                    .markers(true)
                    .log_x(lo > 0.0 && hi / lo >= 100.0)
                    .legend(LegendPosition::LowerRight);
                for s in &scanners {
                    chart = chart.series(s.clone(), points.iter().filter_map(|(x, m)| m.get(s).map(|v| (*x, mean(v)))));
                }
                chart.save_png(&file, 760, 500)?;
            }
            _ => {
                group_order.sort();
                let mut groups: Vec<String> = Vec::new();
                for (_, g) in group_order {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
                let mut chart =
                    BarChart::new(&title, groups.clone()).y_label(&a.metric).y_range(0.0, 1.05).value_labels(2);
                for s in &scanners {
                    chart =
                        chart.series(s.clone(), groups.iter().map(|g| by_value[g].1.get(s).map(mean).unwrap_or(0.0)));
                }
                chart.save_png(&file, 760, 500)?;
            }
        }
        charts.push(file);
    }
    if swept_keys.is_empty() && several_stages {
        let file = out.join(format!("{}_by_score_stage.png", a.metric));
        let mut chart = BarChart::new(format!("{} {} by score stage", a.split, a.metric), scanners.clone())
            .y_label(&a.metric)
            .y_range(0.0, 1.05)
            .value_labels(2);
        for ((_, _, stage), values) in &lines {
            chart = chart.series(stage.clone(), scanners.iter().map(|s| values.get(s).copied().unwrap_or(0.0)));
        }
        chart.save_png(&file, 760, 500)?;
        charts.push(file);
    }
    for c in &charts {
        println!("chart: {}", c.display());
    }
    Ok(())
}
