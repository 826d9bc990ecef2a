//! MIDOG.json: the COCO-like annotation file of MIDOG 2021, and MIDOG++.json, its multi-domain
//! extension in the same layout (each image also has a `tumor_type`; annotations a `labels`
//! list of the annotators' votes, kept as an extra field).
//!
//! `images`: `id` (= file number), `file_name`, `width`, `height`. `annotations`: `bbox` as
//! `[x1, y1, x2, y2]` corners (not COCO's x, y, w, h; every box 50 × 50 px, its centre is the
//! cell), `category_id` (1 = mitotic figure, 2 = hard negative / imposter), `image_id`, `id`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// The annotation file of MIDOG 2021.
pub const MIDOG_JSON: &str = "MIDOG.json";
/// The annotation file of MIDOG++ (`databases/MIDOG++.json` in its repository).
pub const MIDOGPP_JSON: &str = "MIDOG++.json";

pub const MITOSIS: u32 = 1;
pub const IMPOSTER: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Category {
    /// Mitotic figure (category 1).
    Mitosis,
    /// Hard negative, "not mitotic figure" (category 2).
    Imposter,
}

impl Category {
    pub fn from_id(id: u32) -> Option<Category> {
        match id {
            MITOSIS => Some(Category::Mitosis),
            IMPOSTER => Some(Category::Imposter),
            _ => None,
        }
    }

    pub fn id(self) -> u32 {
        match self {
            Category::Mitosis => MITOSIS,
            Category::Imposter => IMPOSTER,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Category::Mitosis => "mitotic figure",
            Category::Imposter => "hard negative",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEntry {
    pub id: u32,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotationEntry {
    pub id: u64,
    pub image_id: u32,
    pub category_id: u32,
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f64; 4],
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl AnnotationEntry {
    pub fn centre(&self) -> (f64, f64) {
        ((self.bbox[0] + self.bbox[2]) / 2.0, (self.bbox[1] + self.bbox[3]) / 2.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryEntry {
    pub id: u32,
    pub name: String,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The whole file, field names as MIDOG writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MidogJson {
    pub images: Vec<ImageEntry>,
    pub annotations: Vec<AnnotationEntry>,
    #[serde(default)]
    pub categories: Vec<CategoryEntry>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl MidogJson {
    pub fn load(path: &Path) -> Result<MidogJson, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let parsed: MidogJson = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner();
            DataError::MidogJson {
                path: path.to_path_buf(),
                message: if at == "." { inner.to_string() } else { format!("at `{at}`: {inner}") },
            }
        })?;
        Ok(parsed)
    }

    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| DataError::MidogJson { path: path.to_path_buf(), message: e.to_string() })?;
        std::fs::write(path, bytes).map_err(|e| DataError::io(path, e))
    }

    /// The standard categories (1 mitotic figure, 2 hard negative).
    pub fn standard_categories() -> Vec<CategoryEntry> {
        [Category::Mitosis, Category::Imposter]
            .iter()
            .map(|c| CategoryEntry { id: c.id(), name: c.name().into(), extra: BTreeMap::new() })
            .collect()
    }

    /// Structural checks that need no image files: unique ids, known categories, boxes with
    /// positive size inside their image. Every problem is listed, named by annotation id.
    pub fn check(&self, path: &Path) -> Vec<String> {
        let mut problems = Vec::new();
        let mut images: BTreeMap<u32, &ImageEntry> = BTreeMap::new();
        for img in &self.images {
            if images.insert(img.id, img).is_some() {
                problems.push(format!("image id {} appears twice", img.id));
            }
            if img.width == 0 || img.height == 0 {
                problems.push(format!("image {} ({}) has size {} × {}", img.id, img.file_name, img.width, img.height));
            }
        }
        let mut ann_ids = std::collections::HashSet::new();
        for a in &self.annotations {
            if !ann_ids.insert(a.id) {
                problems.push(format!("annotation id {} appears twice", a.id));
            }
            if Category::from_id(a.category_id).is_none() {
                problems.push(format!(
                    "annotation {}: unknown category_id {} (1 = mitotic figure, 2 = hard negative)",
                    a.id, a.category_id
                ));
            }
            let Some(img) = images.get(&a.image_id) else {
                problems.push(format!("annotation {}: image_id {} is not in `images`", a.id, a.image_id));
                continue;
            };
            let [x1, y1, x2, y2] = a.bbox;
            if !(x1 < x2 && y1 < y2) || a.bbox.iter().any(|v| !v.is_finite()) {
                problems.push(format!(
                    "annotation {} in {}: bbox {:?} is not [x1, y1, x2, y2] with x1 < x2, y1 < y2",
                    a.id, img.file_name, a.bbox
                ));
                continue;
            }
            let (cx, cy) = a.centre();
            if cx < 0.0 || cy < 0.0 || cx > img.width as f64 || cy > img.height as f64 {
                problems.push(format!(
                    "annotation {} in {}: centre ({cx:.0}, {cy:.0}) lies outside the {} × {} image",
                    a.id, img.file_name, img.width, img.height
                ));
            }
        }
        let _ = path;
        problems
    }
}

/// Where an image's file is.
pub fn image_path(root: &Path, img: &ImageEntry) -> PathBuf {
    root.join(&img.file_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "info": {"description": "MIDOG 2021"},
      "images": [{"license": 1, "file_name": "001.tiff", "id": 1, "width": 7215, "height": 5412}],
      "categories": [{"id": 1, "name": "mitotic figure"}, {"id": 2, "name": "hard negative"}],
      "annotations": [
        {"iscrowd": 0, "area": 2500, "bbox": [100, 200, 150, 250], "category_id": 1, "image_id": 1, "id": 1, "labels": 1},
        {"iscrowd": 0, "area": 2500, "bbox": [7000, 5000, 7050, 5050], "category_id": 2, "image_id": 1, "id": 2, "labels": 1}
      ]
    }"#;

    #[test]
    fn parses_midog_layout_and_keeps_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("MIDOG.json");
        std::fs::write(&p, SAMPLE).unwrap();
        let m = MidogJson::load(&p).unwrap();
        assert_eq!(m.images[0].width, 7215);
        assert_eq!(m.annotations[0].centre(), (125.0, 225.0));
        assert!(m.check(&p).is_empty());
        assert!(m.extra.contains_key("info"));
        // Round trip keeps extra fields.
        m.save(&p).unwrap();
        assert_eq!(MidogJson::load(&p).unwrap(), m);
    }

    #[test]
    fn check_names_each_bad_annotation() {
        let mut m: MidogJson = serde_json::from_str(SAMPLE).unwrap();
        m.annotations[0].category_id = 7;
        m.annotations[1].bbox = [8000.0, 100.0, 8050.0, 150.0];
        let p = m.check(Path::new("MIDOG.json"));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("annotation 1") && p[0].contains("category_id 7"));
        assert!(p[1].contains("annotation 2") && p[1].contains("outside"));
    }

    #[test]
    fn wrong_shapes_are_reported_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("MIDOG.json");
        std::fs::write(&p, r#"{"images": [{"id": "one"}], "annotations": []}"#).unwrap();
        let e = MidogJson::load(&p).unwrap_err().to_string();
        assert!(e.contains("MIDOG.json") && e.contains("images[0].id"), "{e}");
    }
}
