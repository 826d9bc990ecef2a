//! `images.json`: the images an inference covered (validation and test), with what scoring
//! needs to know about each. Written by tile_infer, carried on by nms.

use std::path::Path;

use engine::StageError;
use serde::{Deserialize, Serialize};

use crate::artifact::DatasetImage;

pub const FILE: &str = "images.json";

/// Whether a stage's output directory holds detections to score or merge: `images.json` and
/// `detections.parquet`, as nms, blob_baseline and ensemble write them.
pub fn has_detections(dir: &Path) -> bool {
    dir.join(FILE).is_file() && dir.join(super::tables::DETECTIONS_FILE).is_file()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Val,
    Test,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Val => "val",
            Role::Test => "test",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferredImage {
    pub id: u32,
    pub file_name: String,
    pub role: Role,
    pub scanner: String,
    pub um_per_px: f64,
    pub width: u32,
    pub height: u32,
    pub tiles: u32,
    pub seconds: f64,
}

impl InferredImage {
    /// The record of one dataset image covered with `tiles` tiles in `seconds`.
    pub fn new(img: &DatasetImage, role: Role, tiles: u32, seconds: f64) -> InferredImage {
        InferredImage {
            id: img.id,
            file_name: img.file_name.clone(),
            role,
            scanner: img.scanner.clone(),
            um_per_px: img.um_per_px,
            width: img.width,
            height: img.height,
            tiles,
            seconds,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferredImages {
    pub images: Vec<InferredImage>,
}

impl InferredImages {
    pub fn load(dir: &Path) -> Result<InferredImages, StageError> {
        super::read_json(&dir.join(FILE))
    }

    pub fn save(&self, dir: &Path) -> Result<(), StageError> {
        super::write_json(&dir.join(FILE), self)
    }
}
