//! The report stage: per scanner and overall TP, FP, FN, precision, recall, F1 and AP, as a
//! Parquet table, a Markdown and an HTML report with plots (precision–recall per scanner, F1
//! against threshold on validation and test, F1 per scanner with its bootstrap interval as error
//! bars, a gallery of crops), and the terminal table `pipeline run` prints at the end
//! (`summary.txt`). Every F1, precision and recall carries the score stage's 95 % interval, or
//! says why it has none. Several score stages may feed one report (e.g. two trainings compared).
//! For a dataset with more domain attributes (MIDOG++), every table gets the same rows per
//! tumour type (species, origin lab, …) after the scanner rows, and each attribute its own F1
//! chart with error bars (`f1_by_tumor_type.png`); a MIDOG 2021 report is what it always was.

use std::fmt::Write as _;
use std::path::Path;

use engine::{StageContext, StageDef, StageError};
use midog_data::TiffImage;
use plot::{AnnotatedImage, BarChart, LegendPosition, LineChart, MarkKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifact::DatasetManifest;
use crate::artifact::dataset_manifest::LoadedDataset;
use crate::artifact::scores::{GroupScore, RowOf, Scores, attribute_name};
use crate::artifact::tables::TableBuilder;
use crate::uncertainty::{bootstrap_caption, interval_cell};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReportParams {
    /// Report title (default: the experiment name).
    pub title: Option<String>,
    /// Crops per kind (true positive, false positive, miss) in the gallery.
    pub gallery_per_kind: usize,
    /// Side of each gallery crop in pixels.
    pub crop_px: u32,
}

impl Default for ReportParams {
    fn default() -> Self {
        ReportParams { title: None, gallery_per_kind: 8, crop_px: 128 }
    }
}

pub struct ReportStage;

impl StageDef for ReportStage {
    type Params = ReportParams;
    const KIND: &'static str = "report";
    // 2: bootstrap intervals in every table and error bars on the F1 chart.
    // Tables and charts per tumour type came without a bump: a MIDOG 2021 report is byte for
    // byte what version 2 wrote (see the score stage's version).
    const VERSION: u32 = 2;
    const SUMMARY: &'static str = "per-scanner table, Markdown/HTML report with plots and a gallery, Parquet";
    const NEEDS: &'static [&'static str] = &["score"];
    // Titles, legends and plot file names show the experiment, variant and score stage names.
    const NAMES_IN_OUTPUT: bool = true;
    const HIGHLIGHTS: &'static [&'static str] = &["report.html", "report.parquet"];

    fn validate(p: &ReportParams) -> Result<(), engine::ParamError> {
        if !(32..=1024).contains(&p.crop_px) {
            return Err(engine::ParamError::new(&["crop_px"], "must be between 32 and 1024"));
        }
        Ok(())
    }
}

struct Source {
    name: String,
    scores: Scores,
}

fn plot_err(e: plot::PlotError) -> StageError {
    StageError::msg(format!("drawing a plot: {e}"))
}

pub fn run(p: &ReportParams, ctx: &StageContext) -> Result<(), StageError> {
    let inputs = ctx.inputs_of("score");
    if inputs.is_empty() {
        return Err(StageError::msg("the report needs at least one `score` stage in `needs`"));
    }
    let sources: Vec<Source> = inputs
        .iter()
        .map(|a| Ok(Source { name: a.name.clone(), scores: Scores::load(&a.dir)? }))
        .collect::<Result<_, StageError>>()?;
    let title = p.title.clone().unwrap_or_else(|| format!("{} — {}", ctx.experiment, ctx.variant));
    let out = ctx.out_dir();

    write_table(&sources, &out.join("report.parquet"))?;
    let mut figures: Vec<(String, String)> = Vec::new();
    for s in &sources {
        let suffix = if sources.len() > 1 { format!("_{}", s.name) } else { String::new() };
        let pr = format!("pr_curves{suffix}.png");
        let mut chart = LineChart::new(format!("Precision–recall on test ({})", s.name))
            .x_label("recall")
            .y_label("precision")
            .x_range(0.0, 1.0)
            .y_range(0.0, 1.02)
            .legend(LegendPosition::LowerLeft);
        for g in s.scores.groups.iter().filter(|g| g.split == "test" && g.is_scanner_row()) {
            chart = chart.series(format!("{} (AP {})", g.scanner, fmt_opt(g.ap)), g.pr_curve.clone());
        }
        chart.save_png(out.join(&pr), 720, 520).map_err(plot_err)?;
        figures.push((pr, format!("Precision–recall per scanner, test images ({})", s.name)));

        let f1 = format!("f1_threshold{suffix}.png");
        let mut chart = LineChart::new(format!("F1 against threshold ({})", s.name))
            .x_label("detection threshold")
            .y_label("F1")
            .x_range(0.0, 1.0)
            .y_range(0.0, 1.02)
            .legend(LegendPosition::LowerLeft);
        for g in s.scores.groups.iter().filter(|g| g.row().is_all()) {
            chart =
                chart.series(format!("{} (F1 {:.3} at {:.2})", g.split, g.f1, s.scores.threshold), g.f1_curve.clone());
        }
        chart.save_png(out.join(&f1), 720, 520).map_err(plot_err)?;
        figures.push((f1, format!("F1 against the detection threshold on validation and test ({})", s.name)));
    }
    let scanners = scanner_names(&sources);
    let mut bars = BarChart::new("Test F1 per scanner (95 % bootstrap intervals)", scanners.clone())
        .y_label("F1")
        .y_range(0.0, 1.05)
        .value_labels(2);
    for s in &sources {
        let group = |sc: &String| s.scores.group("test", sc);
        let values: Vec<f64> = scanners.iter().map(|sc| group(sc).map(|g| g.f1).unwrap_or(f64::NAN)).collect();
        let intervals = scanners.iter().map(|sc| group(sc).and_then(|g| g.interval("f1")).map(|i| (i.lo, i.hi)));
        bars = bars.series(s.name.clone(), values).intervals(intervals);
    }
    bars.save_png(out.join("f1_by_scanner.png"), 720, 480).map_err(plot_err)?;
    figures.push((
        "f1_by_scanner.png".into(),
        "Test F1 per scanner; whiskers: 95 % bootstrap intervals (none where a row has fewer than 2 images or no mitotic figures)".into(),
    ));
    for attribute in attributes(&sources) {
        let file = format!("f1_by_{attribute}.png");
        f1_by_domain(&sources, &attribute, &out.join(&file))?;
        figures.push((
            file,
            format!(
                "Test F1 per {}; whiskers: 95 % bootstrap intervals (none where a row has fewer than 2 images or no mitotic figures)",
                attribute_name(&attribute)
            ),
        ));
    }

    if let Ok(dataset) = ctx.ancestor("dataset").and_then(DatasetManifest::load) {
        if let Some(g) = gallery(&sources[0].scores, &dataset, p)? {
            g.save_png(out.join("gallery.png")).map_err(plot_err)?;
            figures.push((
                "gallery.png".into(),
                "Test crops: true positives (green squares), false positives (red squares), misses (yellow circles); blue circles are annotated mitoses".into(),
            ));
        }
    } else {
        tracing::warn!("no dataset upstream: the report has no gallery");
    }

    let table = terminal_table(&sources);
    std::fs::write(out.join("summary.txt"), &table).map_err(|e| StageError::io(out.join("summary.txt"), e))?;
    let md = markdown(&title, &sources, &table, &figures);
    std::fs::write(out.join("report.md"), &md).map_err(|e| StageError::io(out.join("report.md"), e))?;
    let html = html(&title, &sources, &figures);
    std::fs::write(out.join("report.html"), html).map_err(|e| StageError::io(out.join("report.html"), e))?;
    if let Some(all) = sources[0].scores.group("test", "all") {
        ctx.set_summary("test_f1", all.f1);
    }
    Ok(())
}

/// The test F1 of each value of a domain attribute, with its interval as whiskers.
fn f1_by_domain(sources: &[Source], attribute: &str, file: &Path) -> Result<(), StageError> {
    let mut values: Vec<String> = Vec::new();
    for s in sources {
        for g in s.scores.groups.iter().filter(|g| g.split == "test" && g.domain.as_deref() == Some(attribute)) {
            if !values.contains(&g.scanner) {
                values.push(g.scanner.clone());
            }
        }
    }
    values.push("all".into());
    let row = |v: &String| if v == "all" { RowOf::all() } else { RowOf { domain: attribute.into(), value: v.clone() } };
    let width = (200 + values.len() * (30 + 26 * sources.len())).clamp(720, 2400) as u32;
    let mut bars =
        BarChart::new(format!("Test F1 per {} (95 % bootstrap intervals)", attribute_name(attribute)), values.clone())
            .y_label("F1")
            .y_range(0.0, 1.05)
            .value_labels(2);
    for s in sources {
        let group = |v: &String| s.scores.row("test", &row(v));
        let f1: Vec<f64> = values.iter().map(|v| group(v).map(|g| g.f1).unwrap_or(f64::NAN)).collect();
        let intervals = values.iter().map(|v| group(v).and_then(|g| g.interval("f1")).map(|i| (i.lo, i.hi)));
        bars = bars.series(s.name.clone(), f1).intervals(intervals);
    }
    bars.save_png(file, width, 480).map_err(plot_err)
}

/// The domain attributes besides the scanner that any source has rows of (`tumor_type`, …).
fn attributes(sources: &[Source]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in sources.iter().flat_map(|s| s.scores.attributes()) {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

fn scanner_names(sources: &[Source]) -> Vec<String> {
    let mut names: Vec<String> = sources
        .iter()
        .flat_map(|s| {
            s.scores
                .groups
                .iter()
                .filter(|g| g.split == "test" && g.is_scanner_row() && !g.row().is_all())
                .map(|g| g.scanner.clone())
        })
        .collect();
    names.sort();
    names.dedup();
    names.push("all".into());
    names
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into())
}

/// Every source's rows of one domain attribute (`None`: the scanner rows and the overall row).
fn rows<'a>(sources: &'a [Source], domain: Option<&str>) -> Vec<(&'a str, &'a GroupScore, &'a Scores)> {
    let mut out = Vec::new();
    for s in sources {
        for g in s.scores.groups.iter().filter(|g| g.domain.as_deref() == domain) {
            out.push((s.name.as_str(), g, &s.scores));
        }
    }
    out
}

/// Every row: scanner rows first, then those of each other attribute.
fn all_rows(sources: &[Source]) -> Vec<(&str, &GroupScore, &Scores)> {
    let mut out = rows(sources, None);
    for a in attributes(sources) {
        out.extend(rows(sources, Some(&a)));
    }
    out
}

fn write_table(sources: &[Source], path: &Path) -> Result<(), StageError> {
    let r = all_rows(sources);
    let groups: Vec<&GroupScore> = r.iter().map(|(_, g, _)| *g).collect();
    let table = TableBuilder::new()
        .str("score_stage", r.iter().map(|(n, _, _)| n.to_string()).collect())
        .str("split", r.iter().map(|(_, g, _)| g.split.clone()).collect());
    let table = crate::score::row_columns(table, &groups.iter().map(|g| g.row()).collect::<Vec<_>>())
        .u64("images", r.iter().map(|(_, g, _)| g.images as u64).collect())
        .u64("tp", r.iter().map(|(_, g, _)| g.tp).collect())
        .u64("fp", r.iter().map(|(_, g, _)| g.fp).collect())
        .u64("fn", r.iter().map(|(_, g, _)| g.fn_).collect())
        .f64("precision", r.iter().map(|(_, g, _)| g.precision).collect())
        .f64("recall", r.iter().map(|(_, g, _)| g.recall).collect())
        .f64("f1", r.iter().map(|(_, g, _)| g.f1).collect())
        .opt_f64("ap", r.iter().map(|(_, g, _)| g.ap).collect())
        .f64("threshold", r.iter().map(|(_, _, s)| s.threshold).collect());
    crate::score::interval_columns(table, &groups).write(path)
}

/// The table printed at the end of `pipeline run`: test results per scanner.
fn terminal_table(sources: &[Source]) -> String {
    let mut out = String::new();
    for s in sources {
        let val = s.scores.val_f1.map(|v| format!(", validation F1 {v:.3}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{}test images, threshold {:.3} ({}{val})",
            if sources.len() > 1 { format!("{}: ", s.name) } else { String::new() },
            s.scores.threshold,
            s.scores.threshold_rule
        );
        let rows: Vec<Vec<String>> =
            s.scores.groups.iter().filter(|g| g.split == "test" && g.is_scanner_row()).map(terminal_row).collect();
        // Scanners first, the overall row last.
        let (mut scanners, all): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r[0] != "all");
        scanners.extend(all);
        let ci = format!("F1 {:.0} % CI", s.scores.bootstrap.map(|b| b.level * 100.0).unwrap_or(95.0));
        out.push_str(&engine::progress::table(
            &["scanner", "images", "TP", "FP", "FN", "precision", "recall", "F1", &ci, "AP"],
            &scanners,
        ));
        out.push('\n');
        for attribute in s.scores.attributes() {
            let rows: Vec<Vec<String>> = s
                .scores
                .groups
                .iter()
                .filter(|g| g.split == "test" && g.domain.as_deref() == Some(attribute.as_str()))
                .map(terminal_row)
                .collect();
            out.push_str(&engine::progress::table(
                &[&attribute, "images", "TP", "FP", "FN", "precision", "recall", "F1", &ci, "AP"],
                &rows,
            ));
            out.push('\n');
        }
    }
    out
}

/// A row of a terminal table: the scanner (or other attribute's value), counts, metrics.
fn terminal_row(g: &GroupScore) -> Vec<String> {
    vec![
        g.scanner.clone(),
        g.images.to_string(),
        g.tp.to_string(),
        g.fp.to_string(),
        g.fn_.to_string(),
        format!("{:.3}", g.precision),
        format!("{:.3}", g.recall),
        format!("{:.3}", g.f1),
        interval_cell(g, "f1"),
        fmt_opt(g.ap),
    ]
}

fn markdown(title: &str, sources: &[Source], table: &str, figures: &[(String, String)]) -> String {
    let mut md = format!("# {title}\n\n");
    md.push_str("MIDOG 2021 metric: a detection is a true positive within 7.5 µm of an unclaimed mitotic figure (greedy, one-to-one); F1 = 2·TP / (2·TP + FP + FN) with counts summed over images. The threshold is chosen on the validation images and applied to the test images.\n\n");
    let _ = writeln!(md, "Brackets: {}.\n", bootstrap_caption(sources[0].scores.bootstrap.as_ref()));
    md.push_str("```text\n");
    md.push_str(table);
    md.push_str("```\n\n");
    let mut tables: Vec<(String, Option<String>)> = vec![("scanner".into(), None)];
    tables.extend(attributes(sources).into_iter().map(|a| (a.clone(), Some(a))));
    for (column, domain) in &tables {
        if domain.is_some() {
            let _ = writeln!(md, "\nBy {}:\n", attribute_name(column));
        }
        markdown_rows(&mut md, column, &rows(sources, domain.as_deref()));
    }
    for (file, caption) in figures {
        let _ = write!(md, "\n### {caption}\n\n![{caption}]({file})\n");
    }
    md
}

fn markdown_rows(md: &mut String, column: &str, rows: &[(&str, &GroupScore, &Scores)]) {
    let _ = write!(
        md,
        "| score stage | split | {column} | images | TP | FP | FN | precision | recall | F1 | AP |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for (name, g, _) in rows {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} | {:.3} {} | {:.3} {} | **{:.3}** {} | {} |",
            g.split,
            g.scanner,
            g.images,
            g.tp,
            g.fp,
            g.fn_,
            g.precision,
            interval_cell(g, "precision"),
            g.recall,
            interval_cell(g, "recall"),
            g.f1,
            interval_cell(g, "f1"),
            fmt_opt(g.ap)
        );
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn html(title: &str, sources: &[Source], figures: &[(String, String)]) -> String {
    let mut h = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f0f0f0}}img{{max-width:100%}}</style></head><body><h1>{t}</h1>",
        t = escape(title)
    );
    let _ = write!(h, "<p>Brackets: {}.</p>", escape(&bootstrap_caption(sources[0].scores.bootstrap.as_ref())));
    let mut tables: Vec<(String, Option<String>)> = vec![("scanner".into(), None)];
    tables.extend(attributes(sources).into_iter().map(|a| (a.clone(), Some(a))));
    for (column, domain) in &tables {
        if domain.is_some() {
            let _ = write!(h, "<h2>By {}</h2>", escape(&attribute_name(column)));
        }
        html_rows(&mut h, column, &rows(sources, domain.as_deref()));
    }
    for (file, caption) in figures {
        let _ = write!(h, "<h3>{}</h3><img src=\"{file}\" alt=\"{}\">", escape(caption), escape(caption));
    }
    h.push_str("</body></html>\n");
    h
}

fn html_rows(h: &mut String, column: &str, rows: &[(&str, &GroupScore, &Scores)]) {
    let _ = write!(
        h,
        "<table><tr><th>score stage</th><th>split</th><th>{}</th><th>images</th><th>TP</th><th>FP</th><th>FN</th><th>precision</th><th>recall</th><th>F1</th><th>AP</th></tr>",
        escape(column)
    );
    for (name, g, _) in rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3} {}</td><td>{:.3} {}</td><td><b>{:.3}</b> {}</td><td>{}</td></tr>",
            escape(name),
            g.split,
            escape(&g.scanner),
            g.images,
            g.tp,
            g.fp,
            g.fn_,
            g.precision,
            escape(&interval_cell(g, "precision")),
            g.recall,
            escape(&interval_cell(g, "recall")),
            g.f1,
            escape(&interval_cell(g, "f1")),
            fmt_opt(g.ap)
        );
    }
    h.push_str("</table>");
}

/// Crops around true positives, false positives and misses of the test images.
fn gallery(scores: &Scores, dataset: &LoadedDataset, p: &ReportParams) -> Result<Option<AnnotatedImage>, StageError> {
    #[derive(Clone, Copy)]
    struct Event {
        image: usize,
        x: f64,
        y: f64,
        rank: f64,
    }
    let (mut tps, mut fps, mut misses) = (Vec::new(), Vec::new(), Vec::new());
    for (i, img) in scores.images.iter().enumerate().filter(|(_, i)| i.split == "test") {
        for &(x, y, score, tp) in &img.detections {
            let e = Event { image: i, x, y, rank: -score };
            if tp { tps.push(e) } else { fps.push(e) }
        }
        for &(x, y, claimed) in &img.ground_truth {
            if claimed.is_none() {
                misses.push(Event { image: i, x, y, rank: i as f64 });
            }
        }
    }
    for v in [&mut tps, &mut fps, &mut misses] {
        v.sort_by(|a, b| a.rank.total_cmp(&b.rank));
        v.truncate(p.gallery_per_kind);
    }
    let events: Vec<Event> = tps.into_iter().chain(fps).chain(misses).collect();
    if events.is_empty() {
        return Ok(None);
    }
    let c = p.crop_px;
    let mut tiles = Vec::new();
    for e in events {
        let img = &scores.images[e.image];
        let d = dataset.image(img.id)?;
        let tiff = TiffImage::open(dataset.path_of(d)).map_err(StageError::domain)?;
        let (x0, y0) = ((e.x - c as f64 / 2.0).round() as i64, (e.y - c as f64 / 2.0).round() as i64);
        let rgb = tiff.read_region_vec(0, x0, y0, c, c).map_err(StageError::domain)?;
        let mut tile = AnnotatedImage::from_rgb(c, c, rgb).map_err(plot_err)?;
        let radius = 25.0;
        let inside = |x: f64, y: f64| {
            x >= x0 as f64 - radius
                && y >= y0 as f64 - radius
                && x < (x0 + c as i64) as f64 + radius
                && y < (y0 + c as i64) as f64 + radius
        };
        for &(gx, gy, claimed) in &img.ground_truth {
            if inside(gx, gy) {
                let kind = if claimed.is_some() { MarkKind::GroundTruth } else { MarkKind::Miss };
                tile.mark(kind, (gx - x0 as f64, gy - y0 as f64), radius + 4.0).map_err(plot_err)?;
            }
        }
        for &(dx, dy, _, tp) in &img.detections {
            if inside(dx, dy) {
                let kind = if tp { MarkKind::TruePositive } else { MarkKind::FalsePositive };
                tile.mark(kind, (dx - x0 as f64, dy - y0 as f64), radius).map_err(plot_err)?;
            }
        }
        tile.label((3, 3), &format!("{} {}", img.scanner, img.file_name), 11, [0, 0, 0]).map_err(plot_err)?;
        tiles.push(tile);
    }
    let mut g = AnnotatedImage::gallery(&tiles, 8, 4, [255, 255, 255]);
    let legend_h = 4 * 18 + 8;
    let mut with_legend = AnnotatedImage::filled(g.width().max(200), g.height() + legend_h, [255, 255, 255]);
    with_legend.paste(&g, 0, legend_h as i64);
    with_legend.mark_legend((6, 4), 12).map_err(plot_err)?;
    g = with_legend;
    Ok(Some(g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use midog_eval::Counts;

    fn source(rows: &[(RowOf, Counts)]) -> Source {
        let groups = rows.iter().map(|(r, c)| GroupScore::from_counts("test", r, 2, *c)).collect();
        Source {
            name: "score".into(),
            scores: Scores {
                threshold: 0.5,
                threshold_rule: "fixed".into(),
                val_f1: None,
                radius_um: 7.5,
                bootstrap: None,
                groups,
                images: Vec::new(),
            },
        }
    }

    fn tumour(v: &str) -> RowOf {
        RowOf { domain: "tumor_type".into(), value: v.into() }
    }

    #[test]
    fn tables_show_each_attribute_after_the_scanners() {
        let c = Counts::new(3, 1, 1);
        let with = [source(&[
            (RowOf::all(), c),
            (RowOf::scanner("XR"), c),
            (tumour("canine lymphosarcoma"), Counts::new(1, 0, 0)),
            (tumour("human melanoma"), c),
        ])];
        let table = terminal_table(&with);
        let (scanners, tumours) = table.split_once("tumor_type").expect("a tumour type table");
        assert!(scanners.contains("XR") && scanners.contains("all") && !scanners.contains("melanoma"), "{table}");
        assert!(tumours.contains("canine lymphosarcoma") && tumours.contains("human melanoma"), "{table}");
        assert!(tumours.find("canine").unwrap() < tumours.find("melanoma").unwrap());
        let md = markdown("t", &with, &table, &[]);
        assert!(md.contains("By tumour type:") && md.contains("| score | test | human melanoma |"), "{md}");
        let h = html("t", &with, &[]);
        assert!(h.contains("<h2>By tumour type</h2>") && h.contains("<th>tumor_type</th>"), "{h}");
        assert_eq!(attributes(&with), ["tumor_type"]);
        assert_eq!(all_rows(&with).len(), 4);

        // Scanner rows only: one table, no attribute sections.
        let without = [source(&[(RowOf::all(), c), (RowOf::scanner("XR"), c)])];
        let table = terminal_table(&without);
        assert_eq!(table.matches("scanner").count(), 1, "{table}");
        assert!(!markdown("t", &without, &table, &[]).contains("By "));
        assert!(attributes(&without).is_empty());
    }
}
