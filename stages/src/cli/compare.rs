//! `pipeline compare`: each metric against each swept key, per scanner — a table in the terminal
//! and PNG charts, every value with its 95 % bootstrap interval — and which differences the data
//! supports: the paired bootstrap F1 difference of every two models on the same images, marked
//! where its interval excludes 0, with a sentence per experiment saying what holds. Replicates
//! (the `replicate` axis) and cross-validation folds (a split's `fold`) are pooled: a model is a
//! recipe, shown as the mean ± sd across its seeds or folds with the two-level interval.
//! Experiments without a sweep but with several score stages (branches) are compared stage by
//! stage. Writes the charts, `paired.parquet` (the pairwise table), `models.parquet` (the
//! aggregates) and `compare.md` (the tables, for a write-up) into the output directory.
//! For a dataset with more domain attributes (MIDOG++), each attribute (tumour type, species,
//! origin lab) gets the same tables after the scanner ones — per variant, per model, paired
//! differences — a chart of its paired differences (`paired_f1_tumor_type.png`), and its rows in
//! both Parquet tables (`domain`, `value` columns); a MIDOG 2021 comparison is what it was.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use engine::cli::CacheArgs;
use engine::{Plan, Store};
use midog_eval::{Bootstrap, Interval};
use plot::{BarChart, LegendPosition, LineChart};
use serde_json::Value;

use crate::artifact::scores::{RowOf, attribute_name};
use crate::artifact::tables::TableBuilder;
use crate::comparison::{Aggregate, Model, Pair, aggregate, pair};
use crate::results::{ResultRow, collect, metric};
use crate::uncertainty::{SUPPORTED, difference, interval, value_with_interval};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    pipeline compare experiments/sampling.toml                 table, charts, paired differences\n  \
    pipeline compare experiments/detectors.toml --against score   every detector against `score`\n  \
    pipeline compare experiments/hyperparams.toml --split val --metric recall")]
pub struct CompareArgs {
    /// The experiment (with a [sweep] or several score stages).
    pub experiment: PathBuf,
    /// f1, precision, recall or ap (the paired differences are always of F1).
    #[arg(long, default_value = "f1")]
    pub metric: String,
    /// test or val.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Where the charts and tables go (default: compare-<experiment name>/).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Only the pairs with this model (a variant without its replicate, or a score stage).
    #[arg(long, value_name = "MODEL")]
    pub against: Option<String>,
    /// Bootstrap resamples of the paired differences and pooled intervals.
    #[arg(long, default_value_t = midog_eval::bootstrap::DEFAULT_RESAMPLES)]
    pub resamples: usize,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = midog_eval::bootstrap::DEFAULT_LEVEL)]
    pub level: f64,
    /// Seed of the resampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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

/// The swept keys whose variants are pooled into one model: the replicate axis, and the fold
/// index of a split stage (k-fold cross-validation).
fn pooled_axes(plan: &Plan, keys: &[String]) -> Vec<String> {
    keys.iter()
        .filter(|k| {
            if k.as_str() == crate::comparison::REPLICATE_AXIS {
                return true;
            }
            let parts: Vec<&str> = k.split('.').collect();
            matches!(parts.as_slice(), ["stages", stage, "fold"]
                if plan.variants.iter().any(|v| v.stages.get(*stage).is_some_and(|s| s.kind == "split")))
        })
        .cloned()
        .collect()
}

/// A model with where it came from.
struct Entry {
    model: Model,
    /// The swept values that identify it (pooled axes left out).
    swept: Vec<(String, Value)>,
    /// Declared position of its first variant.
    rank: usize,
    keys: Vec<String>,
}

/// Groups the rows into models: one per score stage and non-pooled swept values, holding a
/// replicate per distinct score key; models that are the very same results (a stage shared by
/// every variant, such as a baseline) appear once, named by their stage.
fn models(plan: &Plan, rows: &[&ResultRow], pooled: &[String]) -> Vec<Entry> {
    let rank = |variant: &str| plan.variants.iter().position(|v| v.variant.name == variant).unwrap_or(usize::MAX);
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen: BTreeMap<(String, String), ()> = BTreeMap::new();
    for r in rows {
        if seen.insert((r.variant.clone(), r.score_stage.clone()), ()).is_some() {
            continue;
        }
        let swept: Vec<(String, Value)> = r.swept.iter().filter(|(k, _)| !pooled.contains(k)).cloned().collect();
        let label = if plan.variants.len() == 1 || swept.is_empty() {
            r.score_stage.clone()
        } else {
            swept.iter().map(|(k, v)| format!("{}={}", short(k), show(v))).collect::<Vec<_>>().join(",")
        };
        let label = if swept.iter().any(|(k, _)| k == "variant") {
            // Named variants: the user's name, then any axes.
            let mut parts: Vec<String> =
                vec![swept.iter().find(|(k, _)| k == "variant").map(|(_, v)| show(v)).unwrap_or_default()];
            parts
                .extend(swept.iter().filter(|(k, _)| k != "variant").map(|(k, v)| format!("{}={}", short(k), show(v))));
            parts.join("/")
        } else {
            label
        };
        match entries.iter_mut().find(|e| e.model.score_stage == r.score_stage && e.swept == swept) {
            Some(e) => {
                if !e.keys.contains(&r.key) {
                    e.keys.push(r.key.clone());
                    e.model.replicates.push(r.scores.clone());
                }
            }
            None => entries.push(Entry {
                model: Model { label, score_stage: r.score_stage.clone(), replicates: vec![r.scores.clone()] },
                swept,
                rank: rank(&r.variant),
                keys: vec![r.key.clone()],
            }),
        }
    }
    // The same results under several variants: keep one, named by the stage.
    let mut out: Vec<Entry> = Vec::new();
    for e in entries {
        if let Some(first) = out.iter_mut().find(|o| o.model.score_stage == e.model.score_stage && o.keys == e.keys) {
            first.model.label = first.model.score_stage.clone();
            // Shared by these variants: only what they have in common identifies it.
            first.swept.retain(|s| e.swept.contains(s));
            continue;
        }
        out.push(e);
    }
    out.sort_by_key(|e| e.rank);
    // Several score stages that each vary with the sweep: name the stage too.
    let mut varying: Vec<&str> =
        out.iter().filter(|e| !e.swept.is_empty()).map(|e| e.model.score_stage.as_str()).collect();
    varying.sort();
    varying.dedup();
    if varying.len() > 1 {
        for e in out.iter_mut().filter(|e| !e.swept.is_empty()) {
            e.model.label = format!("{} ({})", e.model.label, e.model.score_stage);
        }
    }
    out
}

fn short(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

pub fn run(a: CompareArgs, registry: &engine::Registry) -> Result<()> {
    if !["f1", "precision", "recall", "ap"].contains(&a.metric.as_str()) {
        bail!("--metric {}: use f1, precision, recall or ap", a.metric);
    }
    let plan_boot =
        Bootstrap::new(a.resamples, a.level, a.seed).map_err(|e| anyhow::anyhow!("--resamples/--level: {e}"))?;
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
    let mut scanners: Vec<String> =
        rows.iter().filter(|r| r.group.is_scanner_row()).map(|r| r.group.scanner.clone()).collect();
    scanners.sort();
    scanners.dedup();
    if let Some(i) = scanners.iter().position(|s| s == "all") {
        let all = scanners.remove(i);
        scanners.push(all);
    }
    // The rows of the scanner tables (the overall one last), then those of each other attribute.
    let scanner_rows: Vec<RowOf> = scanners.iter().map(|s| RowOf::scanner(s)).collect();
    let domains = domain_rows(&rows);
    let every_row: Vec<RowOf> =
        scanner_rows.iter().chain(domains.iter().flat_map(|(_, r)| r.iter())).cloned().collect();
    let swept_keys: Vec<String> =
        rows.first().map(|r| r.swept.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();
    let pooled = pooled_axes(&plan, &swept_keys);
    let mut md = format!("# {} ({} images)\n\n", plan.experiment.name, a.split);

    // The per-variant table: one line per variant and score stage.
    let rank = |variant: &str| plan.variants.iter().position(|v| v.variant.name == variant).unwrap_or(usize::MAX);
    let mut lines: Lines = BTreeMap::new();
    for r in &rows {
        lines.entry((rank(&r.variant), r.variant.clone(), r.score_stage.clone())).or_default().insert(r.group.row(), r);
    }
    let several_stages = rows.iter().any(|r| r.score_stage != rows[0].score_stage);
    let (header, table) = variant_table(&a, &lines, &swept_keys, several_stages, &scanner_rows);
    let caption = crate::uncertainty::bootstrap_caption(rows[0].scores.bootstrap.as_ref());
    println!(
        "{} ({} images, {}; brackets: {caption})\n{}",
        plan.experiment.name,
        a.split,
        a.metric,
        engine::progress::table(&header.iter().map(String::as_str).collect::<Vec<_>>(), &table)
    );
    let _ = writeln!(md, "{} per variant; brackets: {caption}.\n", a.metric);
    md.push_str(&markdown_table(&header, &table));
    for (attribute, columns) in &domains {
        let (header, table) = variant_table(&a, &lines, &swept_keys, several_stages, columns);
        let per = attribute_name(attribute);
        println!(
            "\n{} per {per} ({} images)\n{}",
            a.metric,
            a.split,
            engine::progress::table(&header.iter().map(String::as_str).collect::<Vec<_>>(), &table)
        );
        let _ = writeln!(md, "\n{} per {per}.\n", a.metric);
        md.push_str(&markdown_table(&header, &table));
    }

    let entries = models(&plan, &rows, &pooled);
    let models: Vec<Model> = entries.iter().map(|e| e.model.clone()).collect();
    let aggregates: Vec<BTreeMap<RowOf, Aggregate>> = models
        .iter()
        .map(|m| {
            every_row.iter().filter_map(|s| aggregate(m, &a.split, s, &plan_boot).map(|g| (s.clone(), g))).collect()
        })
        .collect();
    if models.iter().any(|m| m.replicates.len() > 1) {
        print_aggregates(&a, &models, &aggregates, &scanner_rows, &pooled, &mut md);
        for (_, columns) in &domains {
            print_aggregates(&a, &models, &aggregates, columns, &pooled, &mut md);
        }
    }
    write_models_parquet(&out.join("models.parquet"), &plan, &a.split, &models, &aggregates, &every_row)?;

    let charts = draw_charts(&a, &out, &entries, &aggregates, &scanners, &swept_keys, &pooled, several_stages)?;

    // Paired differences.
    let pairs = pair_indices(&entries, a.against.as_deref())?;
    let pairs_of = |columns: &[RowOf]| -> Vec<Vec<Pair>> {
        pairs
            .iter()
            .map(|&(i, j)| columns.iter().map(|s| pair(&models, i, j, &a.split, s, &plan_boot)).collect())
            .collect()
    };
    let results = pairs_of(&scanner_rows);
    let by_domain: Vec<(&String, Vec<Vec<Pair>>)> = domains.iter().map(|(d, columns)| (d, pairs_of(columns))).collect();
    if !pairs.is_empty() {
        print_pairs(&a, &plan_boot, &models, &results, &scanner_rows, "", &mut md);
        for ((attribute, columns), (_, results)) in domains.iter().zip(&by_domain) {
            let per = format!(" per {}", attribute_name(attribute));
            print_pairs(&a, &plan_boot, &models, results, columns, &per, &mut md);
        }
        let verdict = verdict(&models, results.iter().chain(by_domain.iter().flat_map(|(_, r)| r.iter())));
        println!("\n{verdict}");
        let _ = writeln!(md, "\n{verdict}");
        let all_pairs: Vec<Vec<Pair>> =
            results.iter().cloned().chain(by_domain.iter().flat_map(|(_, r)| r.iter().cloned())).collect();
        write_pairs_parquet(&out.join("paired.parquet"), &plan, &a.split, &plan_boot, &models, &all_pairs)?;
        let file = out.join("paired_f1.png");
        draw_pairs(&file, &format!("{} F1 difference", a.split), &models, &results, &scanners)?;
        let _ = writeln!(md, "\n![paired F1 differences](paired_f1.png)");
        println!("chart: {}", file.display());
        for ((attribute, columns), (_, results)) in domains.iter().zip(&by_domain) {
            let name = format!("paired_f1_{attribute}.png");
            let values: Vec<String> = columns.iter().map(|r| r.value.clone()).collect();
            let title = format!("{} F1 difference per {}", a.split, attribute_name(attribute));
            draw_pairs(&out.join(&name), &title, &models, results, &values)?;
            let _ = writeln!(md, "\n![paired F1 differences per {}]({name})", attribute_name(attribute));
            println!("chart: {}", out.join(&name).display());
        }
        println!("table: {}", out.join("paired.parquet").display());
    } else {
        println!("\nno pairs of models to compare (one model per score stage)");
    }
    for c in &charts {
        println!("chart: {}", c.display());
        let _ = writeln!(
            md,
            "\n![{}]({})",
            c.file_stem().unwrap_or_default().to_string_lossy(),
            c.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    std::fs::write(out.join("compare.md"), md)?;
    println!("tables: {}", out.join("compare.md").display());
    Ok(())
}

/// The per-variant lines: (declared position, variant, score stage) → that line's rows.
type Lines<'a> = BTreeMap<(usize, String, String), BTreeMap<RowOf, &'a &'a ResultRow>>;

/// The rows of each domain attribute besides the scanner (`tumor_type`, …) that the results
/// have, in the score stage's order.
fn domain_rows(rows: &[&ResultRow]) -> Vec<(String, Vec<RowOf>)> {
    let mut out: Vec<(String, Vec<RowOf>)> = Vec::new();
    for r in rows.iter().filter(|r| !r.group.is_scanner_row()) {
        let row = r.group.row();
        match out.iter_mut().find(|(d, _)| *d == row.domain) {
            Some((_, v)) if v.contains(&row) => {}
            Some((_, v)) => v.push(row),
            None => out.push((row.domain.clone(), vec![row])),
        }
    }
    out
}

/// How a table's column names a row: the scanner or value, or `all`.
fn column_label(row: &RowOf) -> String {
    row.value.clone()
}

/// The per-variant table over `columns`: a line per variant and score stage.
fn variant_table(
    a: &CompareArgs,
    lines: &Lines,
    swept_keys: &[String],
    several_stages: bool,
    columns: &[RowOf],
) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header: Vec<String> = swept_keys.iter().map(|k| short(k).to_string()).collect();
    if swept_keys.is_empty() {
        header.push("variant".into());
    }
    if several_stages {
        header.push("score stage".into());
    }
    header.extend(columns.iter().map(|s| format!("{} {}", a.metric, column_label(s))));
    let table: Vec<Vec<String>> = lines
        .iter()
        .map(|((_, variant, stage), by_row)| {
            let first = by_row.values().next().expect("a line has a row");
            let mut row: Vec<String> = first.swept.iter().map(|(_, v)| show(v)).collect();
            if swept_keys.is_empty() {
                row.push(variant.clone());
            }
            if several_stages {
                row.push(stage.clone());
            }
            row.extend(columns.iter().map(|s| {
                by_row
                    .get(s)
                    .and_then(|r| {
                        metric(&r.group, &a.metric).map(|v| value_with_interval(v, r.group.interval(&a.metric)))
                    })
                    .unwrap_or_else(|| "–".into())
            }));
            row
        })
        .collect();
    (header, table)
}

fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s =
        format!("| {} |\n|{}|\n", header.join(" | "), header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

fn print_aggregates(
    a: &CompareArgs,
    models: &[Model],
    aggregates: &[BTreeMap<RowOf, Aggregate>],
    scanners: &[RowOf],
    pooled: &[String],
    md: &mut String,
) {
    let over = pooled.iter().map(|k| short(k)).collect::<Vec<_>>().join(" × ");
    let mut header = vec!["model".to_string(), over.clone()];
    header.extend(scanners.iter().map(|s| format!("F1 {}", column_label(s))));
    header.push("val F1".into());
    let rows: Vec<Vec<String>> = models
        .iter()
        .zip(aggregates)
        .map(|(m, agg)| {
            let mut row = vec![m.label.clone(), m.replicates.len().to_string()];
            row.extend(scanners.iter().map(|s| agg.get(s).map(mean_sd_pooled).unwrap_or_else(|| "–".into())));
            let val: Vec<f64> = m.replicates.iter().filter_map(|r| r.val_f1).collect();
            row.push(mean_sd(&val));
            row
        })
        .collect();
    let text = format!(
        "{} F1 per model, pooled over {over}: mean ± sd across them [{:.0} % two-level bootstrap interval: images and {over} resampled]",
        a.split,
        a.level * 100.0
    );
    println!("\n{text}\n{}", engine::progress::table(&header.iter().map(String::as_str).collect::<Vec<_>>(), &rows));
    let _ = writeln!(md, "\n{text}.\n");
    md.push_str(&markdown_table(&header, &rows));
}

fn mean_sd(v: &[f64]) -> String {
    match v.len() {
        0 => "–".into(),
        1 => format!("{:.3}", v[0]),
        n => {
            let mean = v.iter().sum::<f64>() / n as f64;
            let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
            format!("{mean:.3} ± {sd:.3}")
        }
    }
}

fn mean_sd_pooled(g: &Aggregate) -> String {
    let head = match g.sd {
        Some(sd) => format!("{:.3} ± {sd:.3}", g.mean),
        None => format!("{:.3}", g.mean),
    };
    match &g.pooled {
        Ok(i) => format!("{head} {}", interval(*i)),
        Err(why) => format!("{head} ({why})"),
    }
}

/// Which models are compared: every two of the same score stage (the variants of a sweep), and
/// two of different score stages when one's swept values are among the other's (the stages of
/// one variant, or a stage shared by every variant such as a baseline or an ensemble of the
/// replicates, against each of the others). `--against` keeps the pairs with that model,
/// oriented as `other − it`.
fn pair_indices(entries: &[Entry], against: Option<&str>) -> Result<Vec<(usize, usize)>> {
    let within = |a: &Entry, b: &Entry| a.swept.iter().all(|s| b.swept.contains(s));
    let mut pairs = Vec::new();
    for i in 0..entries.len() {
        for j in i + 1..entries.len() {
            let (a, b) = (&entries[i], &entries[j]);
            if a.model.score_stage == b.model.score_stage || within(a, b) || within(b, a) {
                pairs.push((i, j));
            }
        }
    }
    let Some(name) = against else { return Ok(pairs) };
    let Some(k) = entries.iter().position(|e| e.model.label == name) else {
        let names: Vec<&str> = entries.iter().map(|e| e.model.label.as_str()).collect();
        let hint = engine::spec::did_you_mean(name, names.iter().copied())
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| format!("the models are: {}", names.join(", ")));
        bail!("--against {name}: no such model; {hint}");
    };
    Ok(pairs
        .into_iter()
        .filter(|&(i, j)| i == k || j == k)
        .map(|(i, j)| if j == k { (i, j) } else { (j, i) })
        .collect())
}

fn print_pairs(
    a: &CompareArgs,
    boot: &Bootstrap,
    models: &[Model],
    results: &[Vec<Pair>],
    scanners: &[RowOf],
    per: &str,
    md: &mut String,
) {
    let mut header = vec!["a".to_string(), "b".to_string()];
    header.extend(scanners.iter().map(|s| format!("ΔF1 {}", column_label(s))));
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|per_scanner| {
            let p = &per_scanner[0];
            let mut row = vec![models[p.a].label.clone(), models[p.b].label.clone()];
            row.extend(per_scanner.iter().map(|p| match &p.result {
                Ok(d) => difference(d),
                Err(why) => format!("– ({why})"),
            }));
            row
        })
        .collect();
    let caption = format!(
        "{} F1 difference a − b{per}, paired {:.0} % bootstrap interval (the same {} images resampled for both, {} resamples); {SUPPORTED} = the interval excludes 0",
        a.split,
        a.level * 100.0,
        a.split,
        boot.resamples
    );
    println!("\n{caption}\n{}", engine::progress::table(&header.iter().map(String::as_str).collect::<Vec<_>>(), &rows));
    let _ = writeln!(md, "\n{caption}.\n");
    md.push_str(&markdown_table(&header, &rows));
}

/// One paragraph: the differences the data supports, and how many it does not.
fn verdict<'a>(models: &[Model], results: impl Iterator<Item = &'a Vec<Pair>>) -> String {
    let mut supported = Vec::new();
    let (mut tested, mut not_tested) = (0, 0);
    for p in results.flatten() {
        match &p.result {
            Ok(d) => {
                tested += 1;
                if d.supported() {
                    let (better, worse) = if d.difference > 0.0 { (p.a, p.b) } else { (p.b, p.a) };
                    supported.push(format!(
                        "{} beats {} on {} (ΔF1 {:+.3} [{:+.3}, {:+.3}])",
                        models[better].label,
                        models[worse].label,
                        if p.row.is_all() {
                            "all images".to_string()
                        } else if p.row.is_scanner_row() {
                            p.row.value.clone()
                        } else {
                            format!("{} ({})", p.row.value, attribute_name(&p.row.domain))
                        },
                        d.difference.abs(),
                        if d.difference > 0.0 { d.interval.lo } else { -d.interval.hi },
                        if d.difference > 0.0 { d.interval.hi } else { -d.interval.lo },
                    ));
                }
            }
            Err(_) => not_tested += 1,
        }
    }
    let mut s = if supported.is_empty() {
        format!("Supported by the data: none of the {tested} differences (every interval contains 0).")
    } else {
        format!(
            "Supported by the data ({} of {tested} differences): {}. Not supported: the other {}, whose intervals contain 0.",
            supported.len(),
            supported.join("; "),
            tested - supported.len()
        )
    };
    if not_tested > 0 {
        let _ = write!(s, " {not_tested} had no interval (too few images or no mitotic figures).");
    }
    s
}

fn pair_label(models: &[Model], p: &Pair) -> String {
    format!("{} − {}", models[p.a].label, models[p.b].label)
}

/// A bar chart of paired differences: a group per pair, a bar per column (`series`: scanners,
/// or the values of one domain attribute).
fn draw_pairs(file: &Path, title: &str, models: &[Model], results: &[Vec<Pair>], scanners: &[String]) -> Result<()> {
    let groups: Vec<String> = results.iter().map(|r| pair_label(models, &r[0])).collect();
    let width = (160 + groups.len() * (40 + 22 * scanners.len())).clamp(760, 4000) as u32;
    // Symmetric about 0, so the sign of every difference reads at a glance.
    let reach = results
        .iter()
        .flatten()
        .filter_map(|p| p.result.as_ref().ok())
        .flat_map(|d| [d.interval.lo.abs(), d.interval.hi.abs(), d.difference.abs()])
        .fold(0.05, f64::max)
        * 1.2;
    let mut chart = BarChart::new(format!("{title}, paired 95 % bootstrap (* = excludes 0)"), groups)
        .y_label("ΔF1")
        .y_range(-reach, reach)
        .value_labels(2)
        .legend(LegendPosition::UpperRight);
    for (k, s) in scanners.iter().enumerate() {
        let get = |r: &Vec<Pair>| r[k].result.as_ref().ok().copied();
        let values: Vec<f64> = results.iter().map(|r| get(r).map(|d| d.difference).unwrap_or(f64::NAN)).collect();
        let intervals: Vec<Option<(f64, f64)>> =
            results.iter().map(|r| get(r).map(|d| (d.interval.lo, d.interval.hi))).collect();
        let labels: Vec<String> = results
            .iter()
            .map(|r| {
                get(r)
                    .map(|d| format!("{:+.2}{}", d.difference, if d.supported() { SUPPORTED } else { "" }))
                    .unwrap_or_default()
            })
            .collect();
        chart = chart.series(s.clone(), values).intervals(intervals).labels(labels);
    }
    chart.save_png(file, width, 520)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn draw_charts(
    a: &CompareArgs,
    out: &Path,
    entries: &[Entry],
    aggregates: &[BTreeMap<RowOf, Aggregate>],
    scanners: &[String],
    swept_keys: &[String],
    pooled: &[String],
    several_stages: bool,
) -> Result<Vec<PathBuf>> {
    // One chart per swept key (and score stage): the metric per scanner for each of its values,
    // as the mean over the other swept keys' values; whiskers where a bar is one model.
    let value_of = |i: usize, s: &str| -> Option<(f64, Option<Interval>)> {
        let e = &entries[i];
        let g = e.model.replicates.first()?.group(&a.split, s)?;
        if e.model.replicates.len() == 1 {
            return metric(g, &a.metric).map(|v| (v, g.interval(&a.metric)));
        }
        // Pooled replicates: the F1 mean with its two-level interval; other metrics averaged.
        if a.metric == "f1" {
            let agg = aggregates[i].get(&RowOf::scanner(s))?;
            return Some((agg.mean, agg.pooled.as_ref().ok().copied()));
        }
        let v: Vec<f64> = e
            .model
            .replicates
            .iter()
            .filter_map(|r| r.group(&a.split, s))
            .filter_map(|g| metric(g, &a.metric))
            .collect();
        (!v.is_empty()).then(|| (v.iter().sum::<f64>() / v.len() as f64, None))
    };
    let mut charts = Vec::new();
    let mut stages: Vec<String> = entries.iter().map(|e| e.model.score_stage.clone()).collect();
    stages.sort();
    stages.dedup();
    for (key, stage) in
        swept_keys.iter().filter(|k| !pooled.contains(k)).flat_map(|k| stages.iter().map(move |s| (k, s)))
    {
        let mut by_value: Vec<(String, Value, Vec<usize>)> = Vec::new();
        for (i, e) in entries.iter().enumerate().filter(|(_, e)| &e.model.score_stage == stage) {
            let Some(v) = e.swept.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()) else { continue };
            match by_value.iter_mut().find(|(s, _, _)| *s == show(&v)) {
                Some(slot) => slot.2.push(i),
                None => by_value.push((show(&v), v, vec![i])),
            }
        }
        if by_value.is_empty() {
            continue;
        }
        let label = short(key).to_string();
        let (file, title) = if stages.len() > 1 {
            (
                out.join(format!("{}_by_{label}_{stage}.png", a.metric)),
                format!("{} {} by {label} ({stage})", a.split, a.metric),
            )
        } else {
            (out.join(format!("{}_by_{label}.png", a.metric)), format!("{} {} by {label}", a.split, a.metric))
        };
        // The mean over a value's models, and its whisker when it is a single model.
        let point = |members: &[usize], s: &str| -> Option<(f64, Option<Interval>)> {
            let vals: Vec<(f64, Option<Interval>)> = members.iter().filter_map(|&i| value_of(i, s)).collect();
            match vals.as_slice() {
                [] => None,
                [one] => Some(*one),
                many => Some((many.iter().map(|v| v.0).sum::<f64>() / many.len() as f64, None)),
            }
        };
        let numeric: Option<Vec<(f64, &Vec<usize>)>> =
            by_value.iter().map(|(_, v, m)| v.as_f64().map(|x| (x, m))).collect();
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
                for s in scanners {
                    chart = chart.series(s.clone(), points.iter().filter_map(|(x, m)| point(m, s).map(|p| (*x, p.0))));
                }
                chart.save_png(&file, 760, 500)?;
            }
            _ => {
                let groups: Vec<String> = by_value.iter().map(|(s, _, _)| s.clone()).collect();
                let mut chart = BarChart::new(format!("{title} (95 % intervals)"), groups.clone())
                    .y_label(&a.metric)
                    .y_range(0.0, 1.05)
                    .value_labels(2);
                for s in scanners {
                    let pts: Vec<Option<(f64, Option<Interval>)>> =
                        by_value.iter().map(|(_, _, m)| point(m, s)).collect();
                    chart = chart
                        .series(s.clone(), pts.iter().map(|p| p.map(|p| p.0).unwrap_or(f64::NAN)))
                        .intervals(pts.iter().map(|p| p.and_then(|p| p.1).map(|i| (i.lo, i.hi))));
                }
                chart.save_png(&file, 760, 500)?;
            }
        }
        charts.push(file);
    }
    if swept_keys.iter().all(|k| pooled.contains(k)) && several_stages {
        let file = out.join(format!("{}_by_score_stage.png", a.metric));
        let mut chart =
            BarChart::new(format!("{} {} by score stage (95 % intervals)", a.split, a.metric), scanners.to_vec())
                .y_label(&a.metric)
                .y_range(0.0, 1.05)
                .value_labels(2);
        for (i, e) in entries.iter().enumerate() {
            let pts: Vec<Option<(f64, Option<Interval>)>> = scanners.iter().map(|s| value_of(i, s)).collect();
            chart = chart
                .series(e.model.label.clone(), pts.iter().map(|p| p.map(|p| p.0).unwrap_or(f64::NAN)))
                .intervals(pts.iter().map(|p| p.and_then(|p| p.1).map(|i| (i.lo, i.hi))));
        }
        chart.save_png(&file, 760, 500)?;
        charts.push(file);
    }
    Ok(charts)
}

fn write_pairs_parquet(
    path: &Path,
    plan: &Plan,
    split: &str,
    boot: &Bootstrap,
    models: &[Model],
    results: &[Vec<Pair>],
) -> Result<()> {
    let all: Vec<&Pair> = results.iter().flatten().collect();
    let ok = |p: &Pair| p.result.as_ref().ok().copied();
    let f1_of = |m: &Model, row: &RowOf| {
        let v: Vec<f64> = m.replicates.iter().filter_map(|r| r.row(split, row).map(|g| g.f1)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let table = TableBuilder::new()
        .str("experiment", all.iter().map(|_| plan.experiment.name.clone()).collect())
        .str("score_stage_a", all.iter().map(|p| models[p.a].score_stage.clone()).collect())
        .str("score_stage_b", all.iter().map(|p| models[p.b].score_stage.clone()).collect())
        .str("split", all.iter().map(|_| split.to_string()).collect());
    crate::score::row_columns(table, &all.iter().map(|p| p.row.clone()).collect::<Vec<_>>())
        .str("a", all.iter().map(|p| models[p.a].label.clone()).collect())
        .str("b", all.iter().map(|p| models[p.b].label.clone()).collect())
        .u64("replicates_a", all.iter().map(|p| models[p.a].replicates.len() as u64).collect())
        .u64("replicates_b", all.iter().map(|p| models[p.b].replicates.len() as u64).collect())
        .u64("images", all.iter().map(|p| p.images as u64).collect())
        .opt_f64("f1_a", all.iter().map(|p| f1_of(&models[p.a], &p.row)).collect())
        .opt_f64("f1_b", all.iter().map(|p| f1_of(&models[p.b], &p.row)).collect())
        .opt_f64("difference", all.iter().map(|p| ok(p).map(|d| d.difference)).collect())
        .opt_f64("lo", all.iter().map(|p| ok(p).map(|d| d.interval.lo)).collect())
        .opt_f64("hi", all.iter().map(|p| ok(p).map(|d| d.interval.hi)).collect())
        .opt_bool("supported", all.iter().map(|p| ok(p).map(|d| d.supported())).collect())
        .opt_str("note", all.iter().map(|p| p.result.as_ref().err().map(|e| e.to_string())).collect())
        .f64("level", all.iter().map(|_| boot.level).collect())
        .u64("resamples", all.iter().map(|_| boot.resamples as u64).collect())
        .u64("seed", all.iter().map(|_| boot.seed).collect())
        .write(path)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn write_models_parquet(
    path: &Path,
    plan: &Plan,
    split: &str,
    models: &[Model],
    aggregates: &[BTreeMap<RowOf, Aggregate>],
    every_row: &[RowOf],
) -> Result<()> {
    // Scanner rows in name order (as this table always had them), then the other attributes'.
    let rows: Vec<(&Model, &Aggregate)> = models
        .iter()
        .zip(aggregates)
        .flat_map(|(m, aggs)| {
            let scanners = aggs.values().filter(|g| g.row.is_scanner_row());
            let others = every_row.iter().filter(|r| !r.is_scanner_row()).filter_map(|r| aggs.get(r));
            scanners.chain(others).map(move |g| (m, g))
        })
        .collect();
    let table = TableBuilder::new()
        .str("experiment", rows.iter().map(|_| plan.experiment.name.clone()).collect())
        .str("model", rows.iter().map(|(m, _)| m.label.clone()).collect())
        .str("score_stage", rows.iter().map(|(m, _)| m.score_stage.clone()).collect())
        .str("split", rows.iter().map(|_| split.to_string()).collect());
    crate::score::row_columns(table, &rows.iter().map(|(_, g)| g.row.clone()).collect::<Vec<_>>())
        .u64("replicates", rows.iter().map(|(m, _)| m.replicates.len() as u64).collect())
        .f64("f1_mean", rows.iter().map(|(_, g)| g.mean).collect())
        .opt_f64("f1_sd", rows.iter().map(|(_, g)| g.sd).collect())
        .opt_f64("f1_lo", rows.iter().map(|(_, g)| g.pooled.as_ref().ok().map(|i| i.lo)).collect())
        .opt_f64("f1_hi", rows.iter().map(|(_, g)| g.pooled.as_ref().ok().map(|i| i.hi)).collect())
        .opt_str("interval_note", rows.iter().map(|(_, g)| g.pooled.as_ref().err().map(|e| e.to_string())).collect())
        .str("f1_per_replicate", rows.iter().map(|(_, g)| serde_json::to_string(&g.f1).unwrap_or_default()).collect())
        .write(path)
        .map_err(|e| anyhow::anyhow!("{e}"))
}
