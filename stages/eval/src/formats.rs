//! The MIDOG 2021 files: algorithm output (detections) and ground truth.
//!
//! Algorithm output, one image (what a grand-challenge container wrote to `mitotic-figures.json`):
//!
//! ```json
//! {"type": "Multiple points",
//!  "points": [{"point": [x_mm, y_mm, 0], "probability": 0.93, "name": "mitotic figure"}],
//!  "version": {"major": 1, "minor": 0}}
//! ```
//!
//! A detections file for many images is a JSON object keyed by image file name with one such value
//! each. Coordinates are millimetres: `mm = px · µm/px / 1000`.
//!
//! Reading follows the official evaluation: a point without `name` counts as a mitotic figure, one
//! with another name is dropped; `z` is ignored. A point without `probability` is kept with score
//! 1.0 (the official F1 ignores probabilities; it only fills in 0.5 for its mAP) and noted.
//!
//! Ground truth comes either as the official evaluation's file, `{"007.tiff": [[x_mm, y_mm, 0],
//! …]}`, or as MIDOG.json (pixels; category 1 only, hard negatives play no part in scoring). In
//! both, the order of the points is kept: the greedy matching visits them in that order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use midog_data::MidogJson;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::detection::{Detection, Point};
use crate::error::EvalError;

/// The `name` of a mitotic-figure point.
pub const MITOTIC_FIGURE: &str = "mitotic figure";
/// The `type` of an algorithm output.
pub const MULTIPLE_POINTS: &str = "Multiple points";

/// Pixels → millimetres at `um_per_px` micrometres per pixel.
pub fn px_to_mm(px: f64, um_per_px: f64) -> f64 {
    px * um_per_px / 1000.0
}

/// Millimetres → pixels at `um_per_px` micrometres per pixel.
pub fn mm_to_px(mm: f64, um_per_px: f64) -> f64 {
    mm * 1000.0 / um_per_px
}

/// One image's algorithm output, field names as the challenge writes them. Unknown fields are
/// ignored on reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointsOutput {
    #[serde(rename = "type", default = "multiple_points")]
    pub kind: String,
    pub points: Vec<OutputPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
}

fn multiple_points() -> String {
    MULTIPLE_POINTS.to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputPoint {
    /// `[x_mm, y_mm, z]` (z is 0; a two-element point is accepted too).
    pub point: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

/// The mitotic-figure detections of one output, in millimetres, with what a user should know
/// about how they were read.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedDetections {
    /// Centres in millimetres; `score` is the probability.
    pub detections_mm: Vec<Detection>,
    pub notes: Vec<String>,
}

impl PointsOutput {
    /// The output for detections in pixels of an image scanned at `um_per_px`.
    pub fn from_detections(dets: &[Detection], um_per_px: f64) -> PointsOutput {
        PointsOutput {
            kind: MULTIPLE_POINTS.to_string(),
            points: dets
                .iter()
                .map(|d| OutputPoint {
                    point: vec![px_to_mm(d.x, um_per_px), px_to_mm(d.y, um_per_px), 0.0],
                    probability: Some(d.score),
                    name: Some(MITOTIC_FIGURE.to_string()),
                })
                .collect(),
            version: Some(Version { major: 1, minor: 0 }),
        }
    }

    /// The mitotic figures, in millimetres. Fails on a point that is not 2 or 3 finite numbers or
    /// whose probability is not in [0, 1]; the message names the point's index.
    pub fn decode(&self) -> Result<DecodedDetections, String> {
        let (mut unnamed_probability, mut other_names) = (0usize, BTreeMap::<&str, usize>::new());
        let mut detections_mm = Vec::with_capacity(self.points.len());
        for (i, p) in self.points.iter().enumerate() {
            let (x, y) = match p.point.as_slice() {
                [x, y] | [x, y, _] if x.is_finite() && y.is_finite() => (*x, *y),
                other => {
                    return Err(format!(
                        "points[{i}]: `point` must be [x_mm, y_mm, 0] with finite numbers, got {other:?}"
                    ));
                }
            };
            if let Some(name) = p.name.as_deref().filter(|n| *n != MITOTIC_FIGURE) {
                *other_names.entry(name).or_default() += 1;
                continue;
            }
            let score = match p.probability {
                Some(s) if (0.0..=1.0).contains(&s) => s,
                Some(s) => return Err(format!("points[{i}]: probability {s} is not a probability in [0, 1]")),
                None => {
                    unnamed_probability += 1;
                    1.0
                }
            };
            detections_mm.push(Detection::new(x, y, score));
        }
        let mut notes = Vec::new();
        if unnamed_probability > 0 {
            notes.push(format!("{unnamed_probability} point(s) without `probability` kept with score 1.0"));
        }
        for (name, n) in other_names {
            notes.push(format!("{n} point(s) named {name:?} are not mitotic figures and were left out"));
        }
        Ok(DecodedDetections { detections_mm, notes })
    }
}

/// Algorithm outputs of many images, keyed by image file name (`007.tiff`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DetectionsFile {
    pub images: BTreeMap<String, PointsOutput>,
}

impl DetectionsFile {
    /// Reads and checks a detections file; every error names the file and, below the top level,
    /// the image entry and point.
    pub fn load(path: &Path) -> Result<DetectionsFile, EvalError> {
        let value = read_detections_json(path)?;
        let Value::Object(map) = value else {
            return Err(json_error(path, "detections file", "expected an object keyed by image file name"));
        };
        if map.contains_key("points") && !map.get("points").is_some_and(Value::is_object) {
            return Err(json_error(
                path,
                "detections file",
                "this is the output of a single image; a detections file maps image file names to such \
                 outputs: {\"007.tiff\": {\"type\": \"Multiple points\", \"points\": [...]}}",
            ));
        }
        let mut images = BTreeMap::new();
        for (image, v) in map {
            let output: PointsOutput =
                serde_json::from_value(v).map_err(|e| EvalError::entry(path, &image, e.to_string()))?;
            output.decode().map_err(|m| EvalError::entry(path, &image, m))?;
            images.insert(image, output);
        }
        Ok(DetectionsFile { images })
    }

    pub fn save(&self, path: &Path) -> Result<(), EvalError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| json_error(path, "detections file", e.to_string()))?;
        std::fs::write(path, bytes).map_err(|e| EvalError::io(path, e))
    }

    /// Adds (or replaces) one image's detections given in pixels at `um_per_px`.
    pub fn insert_pixels(&mut self, image: impl Into<String>, dets: &[Detection], um_per_px: f64) {
        self.images.insert(image.into(), PointsOutput::from_detections(dets, um_per_px));
    }
}

/// The unit ground-truth points are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CoordUnit {
    Millimetre,
    Pixel,
}

/// Which of the two ground-truth layouts a file was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroundTruthFormat {
    /// `{"007.tiff": [[x_mm, y_mm, 0], ...]}`, millimetres.
    Official,
    /// MIDOG.json, pixels.
    MidogJson,
}

/// Mitosis positions per labelled image, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundTruth {
    pub path: PathBuf,
    pub format: GroundTruthFormat,
    pub unit: CoordUnit,
    /// Image file name → mitosis centres in `unit`, in file order. An image with an empty list is
    /// labelled and has no mitosis: every detection in it is a false positive.
    pub images: BTreeMap<String, Vec<Point>>,
    /// Images MIDOG.json lists that the dataset's definition calls unlabelled (Leica GT450, ids
    /// 151–200, in MIDOG 2021). They are never scored.
    pub unlabelled: Vec<String>,
    /// What a user should know about how the file was read (annotations of unlabelled images).
    pub notes: Vec<String>,
}

/// Whether a MIDOG.json image is labelled, by image id; `None`: the definition does not cover
/// the id. Labels come from the dataset's definition (MIDOG's id ranges, a scanner table),
/// never from whether an image happens to have annotations: a labelled image without any is a
/// negative image, and every detection in it is a false positive.
pub type LabelledRule<'a> = &'a dyn Fn(u32) -> Option<bool>;

/// The MIDOG 2021 definition: ids 1–150 labelled, 151–200 (Leica GT450) unlabelled.
pub fn midog_2021_labelled(id: u32) -> Option<bool> {
    midog_data::ScannerMap::midog_2021().labelled(id)
}

impl GroundTruth {
    /// Reads either layout; a top-level `images` array means MIDOG.json, whose images are
    /// labelled or not by `labelled` (the official layout lists labelled images only).
    pub fn load(path: &Path, labelled: LabelledRule<'_>) -> Result<GroundTruth, EvalError> {
        let value = read_json(path, "ground-truth file")?;
        if value.get("images").is_some_and(Value::is_array) {
            let midog = MidogJson::load(path)?;
            GroundTruth::from_midog_json(path, &midog, labelled)
        } else {
            GroundTruth::from_official_value(path, value)
        }
    }

    /// The official evaluation's file, already parsed.
    pub fn from_official_value(path: &Path, value: Value) -> Result<GroundTruth, EvalError> {
        let Value::Object(map) = value else {
            return Err(json_error(path, "ground-truth file", "expected {\"007.tiff\": [[x_mm, y_mm, 0], ...], ...}"));
        };
        let mut images = BTreeMap::new();
        for (image, v) in map {
            let Value::Array(items) = v else {
                return Err(EvalError::entry(path, &image, "expected a list of [x_mm, y_mm, 0] points"));
            };
            let mut points = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let coords: Option<Vec<f64>> =
                    item.as_array().map(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>()).unwrap_or(None);
                match coords.as_deref() {
                    Some([x, y] | [x, y, _]) if x.is_finite() && y.is_finite() => points.push(Point::new(*x, *y)),
                    _ => {
                        return Err(EvalError::entry(
                            path,
                            &image,
                            format!("point {i} is not [x_mm, y_mm, 0]: {item}"),
                        ));
                    }
                }
            }
            images.insert(image, points);
        }
        Ok(GroundTruth {
            path: path.to_path_buf(),
            format: GroundTruthFormat::Official,
            unit: CoordUnit::Millimetre,
            images,
            unlabelled: Vec::new(),
            notes: Vec::new(),
        })
    }

    /// MIDOG.json: the centres of category-1 boxes, in annotation order, per labelled image
    /// (every image `labelled` says is, with or without annotations).
    pub fn from_midog_json(
        path: &Path,
        midog: &MidogJson,
        labelled: LabelledRule<'_>,
    ) -> Result<GroundTruth, EvalError> {
        let names: BTreeMap<u32, &str> = midog.images.iter().map(|img| (img.id, img.file_name.as_str())).collect();
        let mut images: BTreeMap<String, Vec<Point>> = BTreeMap::new();
        let mut unlabelled = Vec::new();
        for img in &midog.images {
            match labelled(img.id) {
                Some(true) => {
                    images.insert(img.file_name.clone(), Vec::new());
                }
                Some(false) => unlabelled.push(img.file_name.clone()),
                None => {
                    return Err(EvalError::entry(
                        path,
                        &img.file_name,
                        format!(
                            "image id {} is outside the id ranges that say which images are labelled \
                             (MIDOG 2021: 1–150 labelled, 151–200 unlabelled); pass --unlabelled-ids \
                             (e.g. `none` when every image is labelled)",
                            img.id
                        ),
                    ));
                }
            }
        }
        let mut ignored: BTreeMap<&str, usize> = BTreeMap::new();
        for a in &midog.annotations {
            let Some(&name) = names.get(&a.image_id) else {
                return Err(json_error(
                    path,
                    "MIDOG.json",
                    format!("annotation {}: image_id {} is not in `images`", a.id, a.image_id),
                ));
            };
            let Some(points) = images.get_mut(name) else {
                *ignored.entry(name).or_default() += 1;
                continue;
            };
            if a.category_id != midog_data::midog::MITOSIS {
                continue;
            }
            let (x, y) = a.centre();
            if !(x.is_finite() && y.is_finite()) {
                return Err(EvalError::entry(
                    path,
                    name,
                    format!("annotation {}: bbox {:?} is not finite", a.id, a.bbox),
                ));
            }
            points.push(Point::new(x, y));
        }
        let notes = ignored
            .into_iter()
            .map(|(name, n)| {
                format!(
                    "{name}: unlabelled by the id ranges, yet it has {n} annotation(s); they are not scored \
                     (pass --unlabelled-ids if this data labels it)"
                )
            })
            .collect();
        Ok(GroundTruth {
            path: path.to_path_buf(),
            format: GroundTruthFormat::MidogJson,
            unit: CoordUnit::Pixel,
            images,
            unlabelled,
            notes,
        })
    }

    /// The official evaluation's ground-truth JSON for these images (to cross-check against the
    /// official script). Pixel ground truth needs each image's resolution.
    pub fn to_official_value(&self, um_per_px: &dyn Fn(&str) -> Option<f64>) -> Result<Value, EvalError> {
        let mut out = serde_json::Map::new();
        for (image, points) in &self.images {
            let scale = match self.unit {
                CoordUnit::Millimetre => 1.0,
                CoordUnit::Pixel => checked_resolution(image, um_per_px(image))? / 1000.0,
            };
            let list = points.iter().map(|p| serde_json::json!([p.x * scale, p.y * scale, 0])).collect();
            out.insert(image.clone(), Value::Array(list));
        }
        Ok(Value::Object(out))
    }
}

/// A resolution that is known, positive and finite, or the error naming the image.
pub fn checked_resolution(image: &str, um_per_px: Option<f64>) -> Result<f64, EvalError> {
    match um_per_px {
        None => Err(EvalError::MissingResolution { image: image.to_string() }),
        Some(u) if u > 0.0 && u.is_finite() => Ok(u),
        Some(u) => Err(EvalError::BadResolution { image: image.to_string(), um_per_px: u }),
    }
}

/// Marks a bare `NaN` / `Infinity` token (not JSON, but what Python's `json.dump` writes for
/// such floats) after it was turned into a string so the point holding it can be named.
const NON_FINITE_MARK: &str = "__pipeline_non_finite__:";

/// The detections file as JSON. Bare `NaN`, `Infinity` and `-Infinity` are not JSON; rather
/// than "expected value at line 3 column 40", the error names the image and point holding one.
fn read_detections_json(path: &Path) -> Result<Value, EvalError> {
    let bytes = std::fs::read(path).map_err(|e| EvalError::io(path, e))?;
    let err = match serde_json::from_slice(&bytes) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let text = String::from_utf8_lossy(&bytes);
    let Some(marked) = mark_non_finite(&text) else {
        return Err(json_error(path, "detections file", err.to_string()));
    };
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&marked) else {
        return Err(json_error(path, "detections file", err.to_string()));
    };
    for (image, v) in &map {
        for (i, p) in v.get("points").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let marked_token = |v: &Value| v.as_str().and_then(|s| s.strip_prefix(NON_FINITE_MARK)).map(str::to_string);
            if let Some(t) = p.get("probability").and_then(marked_token) {
                return Err(EvalError::entry(
                    path,
                    image,
                    format!("points[{i}]: probability {t} is not a probability in [0, 1]"),
                ));
            }
            if let Some(t) = p.get("point").and_then(Value::as_array).into_iter().flatten().find_map(marked_token) {
                return Err(EvalError::entry(
                    path,
                    image,
                    format!("points[{i}]: `point` holds {t}, not a finite number"),
                ));
            }
        }
    }
    Err(json_error(path, "detections file", format!("{err} (a bare NaN or Infinity is not JSON)")))
}

/// `text` with every bare `NaN`, `Infinity` or `-Infinity` outside strings replaced by a marked
/// string, or `None` when there is none.
fn mark_non_finite(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped, mut found) = (false, false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = ["-Infinity", "Infinity", "-NaN", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
            out.push_str(&format!("\"{NON_FINITE_MARK}{token}\""));
            rest = &rest[token.len()..];
            found = true;
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    found.then_some(out)
}

fn read_json(path: &Path, what: &'static str) -> Result<Value, EvalError> {
    let bytes = std::fs::read(path).map_err(|e| EvalError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| json_error(path, what, e.to_string()))
}

fn json_error(path: &Path, what: &'static str, message: impl Into<String>) -> EvalError {
    EvalError::Json { path: path.to_path_buf(), what, message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn output_round_trips_through_millimetres() {
        let dir = tempfile::tempdir().unwrap();
        let dets = [Detection::new(1000.0, 2000.0, 0.9), Detection::new(31.5, 7.25, 0.65)];
        let mut file = DetectionsFile::default();
        file.insert_pixels("007.tiff", &dets, 0.23);
        let p = dir.path().join("dets.json");
        file.save(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"type\": \"Multiple points\"") && text.contains("\"name\": \"mitotic figure\""));
        assert!(text.contains("\"major\": 1"));
        let back = DetectionsFile::load(&p).unwrap();
        assert_eq!(back, file);
        let mm = back.images["007.tiff"].decode().unwrap().detections_mm;
        assert!((mm[0].x - 0.23).abs() < 1e-12 && (mm[0].y - 0.46).abs() < 1e-12);
        let px: Vec<(f64, f64)> = mm.iter().map(|d| (mm_to_px(d.x, 0.23), mm_to_px(d.y, 0.23))).collect();
        assert!((px[1].0 - 31.5).abs() < 1e-9 && (px[1].1 - 7.25).abs() < 1e-9);
    }

    #[test]
    fn reading_follows_the_official_script() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "d.json",
            r#"{"001.tiff": {"type": "Multiple points", "points": [
                {"point": [1.0, 2.0, 0], "probability": 0.8, "name": "mitotic figure"},
                {"point": [1.1, 2.0], "probability": 0.7},
                {"point": [1.2, 2.0, 0], "name": "mitotic figure"},
                {"point": [1.3, 2.0, 0], "probability": 0.9, "name": "non-mitotic figure"}
            ], "extra": true}}"#,
        );
        let file = DetectionsFile::load(&p).unwrap();
        let decoded = file.images["001.tiff"].decode().unwrap();
        let scores: Vec<f64> = decoded.detections_mm.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.8, 0.7, 1.0]);
        assert_eq!(decoded.notes.len(), 2, "{:?}", decoded.notes);
    }

    #[test]
    fn errors_name_the_file_the_image_and_the_point() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "bad.json", r#"{"001.tiff": {"points": [{"point": [1.0]}]}}"#);
        let e = DetectionsFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("001.tiff") && e.contains("points[0]"), "{e}");
        let p = write(dir.path(), "bad2.json", r#"{"002.tiff": {"type": "Multiple points"}}"#);
        let e = DetectionsFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("002.tiff") && e.contains("points"), "{e}");
        let p = write(dir.path(), "single.json", r#"{"type": "Multiple points", "points": []}"#);
        let e = DetectionsFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("single image"), "{e}");
        let p = write(dir.path(), "gt.json", r#"{"003.tiff": [[1.0, 2.0, 0], [1.0, "x", 0]]}"#);
        let e = GroundTruth::load(&p, &midog_2021_labelled).unwrap_err().to_string();
        assert!(e.contains("gt.json") && e.contains("003.tiff") && e.contains("point 1"), "{e}");
        let e = GroundTruth::load(&dir.path().join("missing.json"), &midog_2021_labelled).unwrap_err().to_string();
        assert!(e.contains("missing.json"), "{e}");
    }

    #[test]
    fn probabilities_outside_0_1_and_bare_nan_name_the_image_and_point() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["7", "-1", "1.5"] {
            let text = format!(
                r#"{{"001.tiff": {{"points": [{{"point": [1, 2, 0], "probability": 0.5}},
                                           {{"point": [1, 3, 0], "probability": {bad}}}]}}}}"#
            );
            let p = write(dir.path(), "d.json", &text);
            let e = DetectionsFile::load(&p).unwrap_err().to_string();
            assert!(e.contains("d.json") && e.contains("001.tiff") && e.contains("points[1]"), "{e}");
            assert!(e.contains(&format!("probability {bad}")) && e.contains("[0, 1]"), "{e}");
        }
        for (bad, field) in [("NaN", "probability NaN"), ("-Infinity", "probability -Infinity")] {
            let text =
                format!(r#"{{"a \"NaN\" name.tiff": {{"points": [{{"point": [1, 2, 0], "probability": {bad}}}]}}}}"#);
            let p = write(dir.path(), "d.json", &text);
            let e = DetectionsFile::load(&p).unwrap_err().to_string();
            assert!(e.contains("a \"NaN\" name.tiff") && e.contains("points[0]") && e.contains(field), "{e}");
        }
        let p = write(dir.path(), "d.json", r#"{"001.tiff": {"points": [{"point": [NaN, 2, 0]}]}}"#);
        let e = DetectionsFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("points[0]") && e.contains("NaN"), "{e}");
        let p = write(dir.path(), "d.json", r#"{"001.tiff": {"points": [}}"#);
        assert!(DetectionsFile::load(&p).unwrap_err().to_string().contains("not a valid detections file"));
        assert_eq!(mark_non_finite(r#"{"NaN": "x\"NaN"}"#), None, "tokens inside strings are left alone");
    }

    #[test]
    fn reads_both_ground_truth_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let p =
            write(dir.path(), "ground-truth.json", r#"{"007.tiff": [[0.5, 0.25, 0], [0.1, 0.2, 0]], "008.tiff": []}"#);
        let gt = GroundTruth::load(&p, &midog_2021_labelled).unwrap();
        assert_eq!((gt.format, gt.unit), (GroundTruthFormat::Official, CoordUnit::Millimetre));
        assert_eq!(gt.images["007.tiff"], vec![Point::new(0.5, 0.25), Point::new(0.1, 0.2)]);
        assert!(gt.images["008.tiff"].is_empty());

        let p = write(
            dir.path(),
            "MIDOG.json",
            r#"{"images": [
                  {"file_name": "001.tiff", "id": 1, "width": 7215, "height": 5412},
                  {"file_name": "002.tiff", "id": 2, "width": 7215, "height": 5412},
                  {"file_name": "003.tiff", "id": 3, "width": 7215, "height": 5412},
                  {"file_name": "151.tiff", "id": 151, "width": 6206, "height": 4666}],
                "categories": [{"id": 1, "name": "mitotic figure"}, {"id": 2, "name": "hard negative"}],
                "annotations": [
                  {"bbox": [100, 200, 150, 250], "category_id": 1, "image_id": 1, "id": 1},
                  {"bbox": [300, 300, 350, 350], "category_id": 2, "image_id": 1, "id": 2},
                  {"bbox": [10, 20, 60, 70], "category_id": 1, "image_id": 1, "id": 3},
                  {"bbox": [0, 0, 50, 50], "category_id": 2, "image_id": 2, "id": 4}]}"#,
        );
        let gt = GroundTruth::load(&p, &midog_2021_labelled).unwrap();
        assert_eq!((gt.format, gt.unit), (GroundTruthFormat::MidogJson, CoordUnit::Pixel));
        assert_eq!(gt.images["001.tiff"], vec![Point::new(125.0, 225.0), Point::new(35.0, 45.0)]);
        assert!(gt.images["002.tiff"].is_empty(), "labelled, no mitosis");
        assert!(gt.images["003.tiff"].is_empty(), "labelled by its id, without any annotation");
        assert_eq!(gt.unlabelled, vec!["151.tiff".to_string()]);
        assert!(gt.notes.is_empty());

        // Another definition: everything labelled; then ids outside any range are an error.
        let all = GroundTruth::load(&p, &|_| Some(true)).unwrap();
        assert!(all.unlabelled.is_empty() && all.images["151.tiff"].is_empty());
        let e = GroundTruth::load(&p, &|id| (id < 100).then_some(true)).unwrap_err().to_string();
        assert!(e.contains("151.tiff") && e.contains("--unlabelled-ids"), "{e}");
        // Annotations of an image the definition calls unlabelled are noted, not scored.
        let none = GroundTruth::load(&p, &|id| Some(id != 1)).unwrap();
        assert!(!none.images.contains_key("001.tiff"));
        assert!(none.notes.iter().any(|n| n.contains("001.tiff") && n.contains("3 annotation")), "{:?}", none.notes);
        let official = gt.to_official_value(&|_| Some(0.25)).unwrap();
        assert_eq!(official["001.tiff"][0], serde_json::json!([0.03125, 0.05625, 0]));
        let e = gt.to_official_value(&|_| None).unwrap_err().to_string();
        assert!(e.contains("001.tiff"), "{e}");
    }
}
