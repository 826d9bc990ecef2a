//! The score stage: the MIDOG metric, per scanner and per value of every other domain attribute
//! the dataset has (MIDOG++: tumour type, species, origin lab). The detection threshold is chosen on the
//! validation images (maximum F1) and applied to the test images; matching is the official one
//! (7.5 µm with each image's own resolution, greedy one-to-one, F1 from summed TP/FP/FN).
//! Every row (split × scanner, split × value of another attribute, and each split overall) carries a case-level percentile bootstrap
//! interval of F1, precision and recall (`midog_eval::bootstrap`: its images resampled with
//! replacement, 2000 times by default, seeded, so the interval is part of the stage's output and
//! key); rows with fewer than 2 images or no mitotic figures say so instead.
//! Writes the MIDOG output JSON of every image too. It scores the detections of its one upstream
//! stage whatever that stage's kind (nms, blob_baseline, …): anything that writes
//! `detections.parquet` and `images.json` can be scored.

use std::collections::BTreeMap;

use engine::{Artifact, ParamError, StageContext, StageDef, StageError};
use midog_eval::formats::{DetectionsFile, PointsOutput};
use midog_eval::{Bootstrap, Counts, Detection, Point, PointMatcher, ScoreThreshold, SweepImage, ThresholdCurve};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::artifact::heldout::HeldoutLabels;
use crate::artifact::inferred::{self, InferredImage, InferredImages, Role};
use crate::artifact::output_names::output_stems;
use crate::artifact::scores::{self, GroupScore, ImageScore, RowOf, Scores};
use crate::artifact::tables::{DETECTIONS_FILE, Detections, TableBuilder};
use crate::artifact::{DatasetImage, DatasetManifest, SplitSets, write_json};

/// `"best-on-val"` (maximise F1 on the validation images) or a fixed number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdChoice {
    BestOnVal,
    Fixed(f64),
}

impl Serialize for ThresholdChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ThresholdChoice::BestOnVal => s.serialize_str("best-on-val"),
            ThresholdChoice::Fixed(v) => s.serialize_f64(*v),
        }
    }
}

impl<'de> Deserialize<'de> for ThresholdChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom("expected \"best-on-val\" or a number"))? {
            Raw::Num(v) => Ok(ThresholdChoice::Fixed(v)),
            Raw::Text(s) if s == "best-on-val" => Ok(ThresholdChoice::BestOnVal),
            Raw::Text(s) => Err(serde::de::Error::custom(format!("`{s}`: expected \"best-on-val\" or a number"))),
        }
    }
}

impl JsonSchema for ThresholdChoice {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ThresholdChoice".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"anyOf": [{"const": "best-on-val"}, {"type": "number"}]})
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreParams {
    /// Hit radius in µm (MIDOG: 7.5), converted with each image's resolution.
    pub radius_um: f64,
    /// Detection threshold: "best-on-val" or a number (a detection counts when score > threshold).
    pub threshold: ThresholdChoice,
    /// Bootstrap confidence intervals of every row.
    pub bootstrap: BootstrapParams,
}

impl Default for ScoreParams {
    fn default() -> Self {
        ScoreParams {
            radius_um: midog_eval::MIDOG_RADIUS_UM,
            threshold: ThresholdChoice::BestOnVal,
            bootstrap: BootstrapParams::default(),
        }
    }
}

/// Case-level bootstrap of each row's images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapParams {
    /// Resamples per row (at least 1000).
    pub resamples: usize,
    /// Confidence level of the percentile interval.
    pub level: f64,
    /// Seed of the resampling.
    pub seed: u64,
}

impl Default for BootstrapParams {
    fn default() -> Self {
        let b = Bootstrap::default();
        BootstrapParams { resamples: b.resamples, level: b.level, seed: b.seed }
    }
}

impl BootstrapParams {
    pub fn plan(&self) -> Bootstrap {
        Bootstrap { resamples: self.resamples, level: self.level, seed: self.seed }
    }
}

pub struct ScoreStage;

impl StageDef for ScoreStage {
    type Params = ScoreParams;
    const KIND: &'static str = "score";
    // 2: bootstrap intervals in every row (scores.json, metrics.parquet).
    // Rows per tumour type (and other domain attributes) came without a bump: a MIDOG 2021
    // dataset's outputs are byte for byte what version 2 wrote, and multi-domain datasets
    // arrived in the same release, so no cached version-2 entry lacks rows it should have.
    const VERSION: u32 = 2;
    const SUMMARY: &'static str = "MIDOG F1 per scanner (and tumour type, …, where the dataset has them): threshold chosen on validation, applied to test";
    const NEEDS: &'static [&'static str] = &["nms"];
    const HIGHLIGHTS: &'static [&'static str] = &["detections_midog.json"];

    fn validate(p: &ScoreParams) -> Result<(), ParamError> {
        if p.radius_um.is_nan() || p.radius_um <= 0.0 {
            return Err(ParamError::new(&["radius_um"], "must be positive"));
        }
        if let ThresholdChoice::Fixed(t) = p.threshold
            && !t.is_finite()
        {
            return Err(ParamError::new(&["threshold"], "must be a finite number or \"best-on-val\""));
        }
        if let Err(e) = p.bootstrap.plan().check() {
            let field =
                if matches!(e, midog_eval::bootstrap::BootstrapError::Level(_)) { "level" } else { "resamples" };
            return Err(ParamError::new(&["bootstrap", field], e.to_string()));
        }
        Ok(())
    }
}

struct Scored<'a> {
    image: &'a InferredImage,
    /// The dataset's record of the image (its domains).
    data: &'a DatasetImage,
    gt: Vec<Point>,
    dets: Vec<Detection>,
    radius_px: f64,
}

pub fn run(p: &ScoreParams, ctx: &StageContext) -> Result<(), StageError> {
    let input = detections_input(ctx)?;
    let inferred = InferredImages::load(&input.dir)?;
    let detections_path = input.dir.join(DETECTIONS_FILE);
    let detections = Detections::read(&detections_path)?;
    let dataset_artifact = ctx.ancestor("dataset")?;
    let dataset = DatasetManifest::load(dataset_artifact)?;
    detections.check(&detections_path, |id| {
        dataset.image(id).map(|d| d.file_name.clone()).unwrap_or_else(|_| "not in the dataset".into())
    })?;
    // Images of an unlabelled scanner are scored only with the held-out labels the split chose.
    let chosen: Vec<u32> = match ctx.ancestor("split") {
        Ok(split) => SplitSets::load(split)?.heldout,
        Err(_) => Vec::new(),
    };
    let heldout = if chosen.is_empty() { HeldoutLabels::default() } else { HeldoutLabels::load(dataset_artifact)? };
    let matcher = PointMatcher { radius_um: p.radius_um };
    let mut scored = Vec::new();
    for img in &inferred.images {
        let d = dataset.image(img.id)?;
        let boxes = if d.labelled {
            &d.mitoses
        } else if let Some(h) = heldout.image(img.id).filter(|_| chosen.contains(&img.id)) {
            &h.mitoses
        } else {
            return Err(StageError::msg(format!(
                "image {} ({}) has no labels and cannot be scored",
                img.id, d.scanner
            )));
        };
        let gt = boxes.iter().map(|b| Point::new((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)).collect();
        scored.push(Scored {
            image: img,
            data: d,
            gt,
            dets: detections.of_image(img.id),
            radius_px: matcher.radius_px(img.um_per_px),
        });
    }
    let of = |role: Role| scored.iter().filter(|s| s.image.role == role).collect::<Vec<_>>();
    let (val, test) = (of(Role::Val), of(Role::Test));
    if test.is_empty() {
        return Err(StageError::msg("no test images were inferred; check the split"));
    }
    require_mitoses("test", &test)?;
    if p.threshold == ThresholdChoice::BestOnVal {
        require_mitoses("validation", &val)?;
    }
    // Scanner rows first (as MIDOG 2021 reports have always had them), then every other
    // domain attribute of the dataset (tumour type, species, origin lab).
    let attributes = dataset.manifest.attributes();
    for (split, set) in [("validation", &val), ("test", &test)] {
        for row in rows_of(&attributes, set).iter().filter(|r| !r.is_all()) {
            if members(set, row).iter().all(|s| s.gt.is_empty()) {
                let what = if row.is_scanner_row() {
                    format!("scanner {}", row.value)
                } else {
                    format!("{} {}", row.domain, row.value)
                };
                tracing::warn!(
                    "the {split} images of {what} have no mitotic figure: their F1 only counts false \
                     positives (0 with any detection, 1 with none) and says nothing about recall"
                );
            }
        }
    }

    let (threshold, rule, val_f1) = match p.threshold {
        ThresholdChoice::Fixed(t) => (t, "fixed", (!val.is_empty()).then(|| counts_at(&val, t).f1())),
        ThresholdChoice::BestOnVal => {
            if val.is_empty() {
                return Err(StageError::msg(
                    "threshold = \"best-on-val\" needs validation images; set split.val_fraction > 0 or give a fixed threshold",
                ));
            }
            let best = *curve(&val).best();
            (best.threshold, "best-on-val", Some(best.f1))
        }
    };
    tracing::info!(threshold, rule, ?val_f1, "detection threshold");

    let plan = p.bootstrap.plan();
    let started = std::time::Instant::now();
    let mut groups = Vec::new();
    for (split, set) in [("val", &val), ("test", &test)] {
        if set.is_empty() {
            continue;
        }
        for row in rows_of(&attributes, set) {
            groups.push(group_score(split, &row, &members(set, &row), threshold, &plan));
        }
    }
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "scores and intervals of every row");

    let mut images = Vec::new();
    let mut midog = DetectionsFile::default();
    let stems = output_stems(scored.iter().map(|s| (s.image.id, s.image.file_name.as_str())));
    let midog_dir = ctx.out_dir().join("midog");
    std::fs::create_dir_all(&midog_dir).map_err(|e| StageError::io(&midog_dir, e))?;
    for s in &scored {
        let m = midog_eval::greedy_match(&s.gt, &s.dets, s.radius_px, ScoreThreshold::Above(threshold));
        let c = m.counts();
        let kept: Vec<usize> = (0..s.dets.len()).filter(|&i| s.dets[i].score > threshold).collect();
        let remap: BTreeMap<usize, usize> = kept.iter().enumerate().map(|(new, &old)| (old, new)).collect();
        images.push(ImageScore {
            id: s.image.id,
            file_name: s.image.file_name.clone(),
            split: s.image.role.as_str().into(),
            scanner: s.image.scanner.clone(),
            um_per_px: s.image.um_per_px,
            tp: c.tp,
            fp: c.fp,
            fn_: c.fn_,
            domains: s.data.domains.clone(),
            ground_truth: s
                .gt
                .iter()
                .zip(&m.ground_truth)
                .map(|(g, d)| (g.x, g.y, d.and_then(|i| remap.get(&i).copied())))
                .collect(),
            detections: kept
                .iter()
                .map(|&i| {
                    let tp = matches!(m.detections[i], midog_eval::DetectionOutcome::TruePositive { .. });
                    (s.dets[i].x, s.dets[i].y, s.dets[i].score, tp)
                })
                .collect(),
        });
        let above: Vec<Detection> = kept.iter().map(|&i| s.dets[i]).collect();
        let points = PointsOutput::from_detections(&above, s.image.um_per_px);
        write_json(&midog_dir.join(format!("{}.json", stems[&s.image.id])), &points)?;
        midog.insert_pixels(s.image.file_name.clone(), &above, s.image.um_per_px);
    }
    midog.save(&ctx.out_dir().join("detections_midog.json")).map_err(StageError::domain)?;

    write_tables(ctx, &groups.iter().collect::<Vec<_>>(), &images, threshold, &attributes[1..])?;
    if let Some(all) = groups.iter().find(|g| g.split == "test" && g.row().is_all()) {
        ctx.set_summary("test_f1", all.f1);
    }
    for g in groups.iter().filter(|g| g.split == "test" && g.is_scanner_row() && !g.row().is_all()) {
        ctx.set_summary(&format!("test_f1_{}", g.scanner), g.f1);
    }
    ctx.set_summary("threshold", threshold);
    let scores = Scores {
        threshold,
        threshold_rule: rule.into(),
        val_f1,
        radius_um: p.radius_um,
        bootstrap: Some(plan),
        groups,
        images,
    };
    write_json(&ctx.out_dir().join(scores::SCORES_FILE), &scores)
}

/// The one direct upstream with detections to score (`detections.parquet` and `images.json`),
/// whatever its kind, so a non-learned baseline is scored exactly like the network's nms output.
fn detections_input(ctx: &StageContext) -> Result<&Artifact, StageError> {
    let has = |a: &Artifact, file: &str| a.dir.join(file).is_file();
    let with: Vec<&Artifact> = ctx.inputs.iter().filter(|a| inferred::has_detections(&a.dir)).collect();
    match with.as_slice() {
        [one] => Ok(one),
        [] => {
            let upstream: Vec<String> = ctx
                .inputs
                .iter()
                .map(|a| {
                    let missing: Vec<&str> =
                        [DETECTIONS_FILE, inferred::FILE].into_iter().filter(|f| !has(a, f)).collect();
                    format!("`{}` (kind `{}`) has no {}", a.name, a.kind, missing.join(" and "))
                })
                .collect();
            let why = if upstream.is_empty() { "it has no upstream stage".to_string() } else { upstream.join("; ") };
            Err(StageError::msg(format!(
                "stage `{}` scores detections (detections.parquet and images.json, as nms and blob_baseline \
                 write them) of the stage in its `needs`, but {why}",
                ctx.name
            )))
        }
        several => Err(StageError::msg(format!(
            "stage `{}` scores one stage's detections, but its `needs` has several with detections ({}); \
             add a score stage per detector",
            ctx.name,
            several.iter().map(|a| format!("`{}`", a.name)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// A scored set without a single mitotic figure has no meaningful F1 (1 when nothing was
/// detected, 0 otherwise), so it is an error, not a perfect score.
fn require_mitoses(split: &str, set: &[&Scored]) -> Result<(), StageError> {
    if set.iter().all(|s| s.gt.is_empty()) {
        return Err(StageError::msg(format!(
            "the {} {split} images ({}) have no mitotic figure in the ground truth, so their F1 would \
             be meaningless; check MIDOG.json's annotations (category 1 = mitotic figure) and the \
             scanner table's `labelled`",
            set.len(),
            set.iter().map(|s| s.image.file_name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(())
}

/// The rows of a set of images: overall, each scanner, then each value of every other attribute
/// (`attributes` as `DatasetManifest::attributes` lists them, the scanner first).
fn rows_of(attributes: &[String], set: &[&Scored]) -> Vec<RowOf> {
    let mut rows = vec![RowOf::all()];
    for attribute in attributes {
        let values = DatasetManifest::values_among(attribute, set.iter().map(|s| s.data));
        // Scanner rows in name order, as they always were; other attributes as values_among
        // sorts them (`unknown` last).
        rows.extend(values.into_iter().map(|value| RowOf { domain: attribute.clone(), value }));
    }
    rows
}

/// The images of `set` that a row holds.
fn members<'a, 'b>(set: &[&'b Scored<'a>], row: &RowOf) -> Vec<&'b Scored<'a>> {
    set.iter().copied().filter(|s| row.is_all() || s.data.domain(&row.domain) == Some(row.value.as_str())).collect()
}

fn curve(set: &[&Scored]) -> ThresholdCurve {
    let sweep: Vec<SweepImage> =
        set.iter().map(|s| SweepImage { ground_truth: &s.gt, detections: &s.dets, radius: s.radius_px }).collect();
    ThresholdCurve::compute(&sweep)
}

fn image_counts(set: &[&Scored], threshold: f64) -> Vec<Counts> {
    set.iter()
        .map(|s| midog_eval::greedy_match(&s.gt, &s.dets, s.radius_px, ScoreThreshold::Above(threshold)).counts())
        .collect()
}

fn counts_at(set: &[&Scored], threshold: f64) -> Counts {
    image_counts(set, threshold).into_iter().sum()
}

fn group_score(split: &str, row: &RowOf, set: &[&Scored], threshold: f64, plan: &Bootstrap) -> GroupScore {
    let per_image = image_counts(set, threshold);
    let c: Counts = per_image.iter().copied().sum();
    let curve = curve(set);
    let (intervals, no_interval) = match plan.intervals(&per_image, scores::row_stream(split, row)) {
        Ok(i) => (Some(i), None),
        Err(why) => (None, Some(why.to_string())),
    };
    GroupScore {
        ap: curve.average_precision(),
        intervals,
        no_interval,
        pr_curve: curve.precision_recall(),
        f1_curve: curve.f1_by_threshold(),
        ..GroupScore::from_counts(split, row, set.len(), c)
    }
}

/// `f1_lo`, `f1_hi`, `precision_lo`, … (null without an interval) and `interval_note` (why not).
pub fn interval_columns(table: TableBuilder, groups: &[&GroupScore]) -> TableBuilder {
    let mut table = table;
    for metric in ["f1", "precision", "recall"] {
        let of = |g: &&GroupScore| g.interval(metric);
        table = table
            .opt_f64(&format!("{metric}_lo"), groups.iter().map(|g| of(g).map(|i| i.lo)).collect())
            .opt_f64(&format!("{metric}_hi"), groups.iter().map(|g| of(g).map(|i| i.hi)).collect());
    }
    table.opt_str("interval_note", groups.iter().map(|g| g.no_interval.clone()).collect())
}

/// The `scanner` column of a row table, followed by `domain` and `value` where the rows are of
/// several domain attributes: a MIDOG 2021 table keeps exactly its old columns. In a
/// multi-domain table `scanner` is null in the rows of other attributes (they pool every
/// scanner), `domain` names the attribute (`scanner`, `tumor_type`, …; `all` for the overall
/// row) and `value` its value.
pub fn row_columns(table: TableBuilder, rows: &[RowOf]) -> TableBuilder {
    if rows.iter().all(RowOf::is_scanner_row) {
        return table.str("scanner", rows.iter().map(|r| r.value.clone()).collect());
    }
    table
        .opt_str("scanner", rows.iter().map(|r| r.is_scanner_row().then(|| r.value.clone())).collect())
        .str("domain", rows.iter().map(domain_of).collect())
        .str("value", rows.iter().map(|r| r.value.clone()).collect())
}

/// The `domain` cell of a row: its attribute, or `all` for the overall row.
pub fn domain_of(row: &RowOf) -> String {
    if row.is_all() { scores::ALL.into() } else { row.domain.clone() }
}

fn write_tables(
    ctx: &StageContext,
    groups: &[&GroupScore],
    images: &[ImageScore],
    threshold: f64,
    extra_attributes: &[String],
) -> Result<(), StageError> {
    let table = TableBuilder::new().str("split", groups.iter().map(|g| g.split.clone()).collect());
    let table = row_columns(table, &groups.iter().map(|g| g.row()).collect::<Vec<_>>())
        .u64("images", groups.iter().map(|g| g.images as u64).collect())
        .u64("tp", groups.iter().map(|g| g.tp).collect())
        .u64("fp", groups.iter().map(|g| g.fp).collect())
        .u64("fn", groups.iter().map(|g| g.fn_).collect())
        .f64("precision", groups.iter().map(|g| g.precision).collect())
        .f64("recall", groups.iter().map(|g| g.recall).collect())
        .f64("f1", groups.iter().map(|g| g.f1).collect())
        .opt_f64("ap", groups.iter().map(|g| g.ap).collect())
        .f64("threshold", groups.iter().map(|_| threshold).collect());
    interval_columns(table, groups).write(&ctx.out_dir().join(scores::METRICS_FILE))?;
    let mut table = TableBuilder::new()
        .u32("image_id", images.iter().map(|i| i.id).collect())
        .str("file_name", images.iter().map(|i| i.file_name.clone()).collect())
        .str("split", images.iter().map(|i| i.split.clone()).collect())
        .str("scanner", images.iter().map(|i| i.scanner.clone()).collect());
    // A column per other domain attribute (`tumor_type`, …), only where the dataset has them.
    for attribute in extra_attributes {
        table = table.opt_str(attribute, images.iter().map(|i| i.domain(attribute).map(str::to_string)).collect());
    }
    table
        .f64("um_per_px", images.iter().map(|i| i.um_per_px).collect())
        .u64("tp", images.iter().map(|i| i.tp).collect())
        .u64("fp", images.iter().map(|i| i.fp).collect())
        .u64("fn", images.iter().map(|i| i.fn_).collect())
        .write(&ctx.out_dir().join(scores::PER_IMAGE_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::StageKey;

    fn artifact(root: &std::path::Path, name: &str, kind: &str, files: &[&str]) -> Artifact {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        Artifact {
            name: name.into(),
            variant: String::new(),
            kind: kind.into(),
            key: StageKey::parse(&"0".repeat(64)).unwrap(),
            dir,
        }
    }

    fn context(inputs: Vec<Artifact>) -> StageContext {
        StageContext::detached("score_x", "score", inputs, &std::env::temp_dir())
    }

    fn dataset_image(id: u32, scanner: &str, tumour: Option<&str>) -> DatasetImage {
        DatasetImage {
            id,
            file_name: format!("{id:03}.tiff"),
            width: 100,
            height: 100,
            scanner: scanner.into(),
            um_per_px: 0.25,
            labelled: true,
            mitoses: vec![],
            imposters: vec![],
            domains: tumour.map(|t| BTreeMap::from([("tumor_type".to_string(), t.to_string())])).unwrap_or_default(),
            official_set: None,
        }
    }

    #[test]
    fn rows_are_overall_then_scanners_then_each_attributes_values() {
        let data = [
            dataset_image(1, "XR", Some("human melanoma")),
            dataset_image(2, "CS2", Some("canine lymphosarcoma")),
            dataset_image(3, "XR", Some("canine lymphosarcoma")),
        ];
        let inferred: Vec<InferredImage> = data.iter().map(|d| InferredImage::new(d, Role::Test, 1, 0.0)).collect();
        let scored: Vec<Scored> = inferred
            .iter()
            .zip(&data)
            .map(|(image, data)| Scored { image, data, gt: vec![], dets: vec![], radius_px: 30.0 })
            .collect();
        let set: Vec<&Scored> = scored.iter().collect();
        let attributes = ["scanner".to_string(), "tumor_type".to_string()];
        let rows = rows_of(&attributes, &set);
        let labels: Vec<String> = rows.iter().map(RowOf::label).collect();
        assert_eq!(
            labels,
            ["all", "CS2", "XR", "tumor_type=canine lymphosarcoma", "tumor_type=human melanoma"].map(String::from)
        );
        let ids = |row: &RowOf| members(&set, row).iter().map(|s| s.image.id).collect::<Vec<_>>();
        assert_eq!(ids(&rows[0]), [1, 2, 3]);
        assert_eq!(ids(&rows[2]), [1, 3]);
        assert_eq!(ids(&rows[3]), [2, 3]);
        // MIDOG 2021: the scanner is the only attribute, so the rows are what they always were.
        let labels: Vec<String> = rows_of(&attributes[..1], &set).iter().map(RowOf::label).collect();
        assert_eq!(labels, ["all", "CS2", "XR"]);
    }

    #[test]
    fn a_table_of_scanner_rows_keeps_its_columns() {
        let rows = [RowOf::all(), RowOf::scanner("XR")];
        let df = row_columns(TableBuilder::new(), &rows).build().unwrap();
        assert_eq!(df.get_column_names().iter().map(|n| n.as_str()).collect::<Vec<_>>(), ["scanner"]);
        let rows = [RowOf::all(), RowOf::scanner("XR"), RowOf { domain: "tumor_type".into(), value: "x".into() }];
        let df = row_columns(TableBuilder::new(), &rows).build().unwrap();
        assert_eq!(
            df.get_column_names().iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            ["scanner", "domain", "value"]
        );
        assert_eq!(df.column("scanner").unwrap().null_count(), 1);
        let domains: Vec<Option<&str>> = df.column("domain").unwrap().str().unwrap().iter().collect();
        assert_eq!(domains, [Some("all"), Some("scanner"), Some("tumor_type")]);
    }

    #[test]
    fn scores_the_one_upstream_with_detections_whatever_its_kind() {
        let root = tempfile::tempdir().unwrap();
        let both = [DETECTIONS_FILE, inferred::FILE];
        let ctx = context(vec![
            artifact(root.path(), "split", "split", &["split.json"]),
            artifact(root.path(), "baseline", "blob_baseline", &both),
        ]);
        assert_eq!(detections_input(&ctx).unwrap().name, "baseline");

        let ctx = context(vec![artifact(root.path(), "half", "nms", &[DETECTIONS_FILE])]);
        let e = detections_input(&ctx).unwrap_err().to_string();
        assert!(e.contains("`half` (kind `nms`) has no images.json"), "{e}");

        let ctx = context(vec![artifact(root.path(), "a", "nms", &both), artifact(root.path(), "b", "nms", &both)]);
        let e = detections_input(&ctx).unwrap_err().to_string();
        assert!(e.contains("`a`, `b`"), "{e}");

        let e = detections_input(&context(Vec::new())).unwrap_err().to_string();
        assert!(e.contains("no upstream"), "{e}");
    }
}
