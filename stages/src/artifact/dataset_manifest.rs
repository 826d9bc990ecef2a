//! `dataset.json`: the dataset stage's output. Every image with its scanner, resolution, labels
//! and boxes, so no later stage reads MIDOG.json or guesses scanners again.

use std::path::{Path, PathBuf};

use engine::{Artifact, StageError};
use midog_data::Scanner;
use serde::{Deserialize, Serialize};

pub const FILE: &str = "dataset.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetImage {
    pub id: u32,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
    /// Short scanner name (`XR`, `S360`, `CS2`, `GT450`, or a user-defined one).
    pub scanner: String,
    /// From the file's resolution tags, else the scanner's nominal value.
    pub um_per_px: f64,
    /// Unlabelled images never enter supervised training, validation or scoring.
    pub labelled: bool,
    /// Mitotic figure boxes `[x1, y1, x2, y2]`, level-0 px.
    pub mitoses: Vec<[f64; 4]>,
    /// Hard-negative boxes.
    pub imposters: Vec<[f64; 4]>,
}

impl DatasetImage {
    pub fn mitosis_centres(&self) -> Vec<(f64, f64)> {
        self.mitoses.iter().map(|b| ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetManifest {
    /// Absolute directory of the image files, or `None` when they live inside this artifact
    /// under `images/` (a synthetic dataset).
    pub external_root: Option<PathBuf>,
    pub scanners: Vec<Scanner>,
    pub images: Vec<DatasetImage>,
}

impl DatasetManifest {
    pub fn load(artifact: &Artifact) -> Result<LoadedDataset, StageError> {
        let manifest: DatasetManifest = super::read_json(&artifact.dir.join(FILE))?;
        let images_dir = manifest.external_root.clone().unwrap_or_else(|| artifact.dir.join("images"));
        Ok(LoadedDataset { manifest, images_dir })
    }

    pub fn image(&self, id: u32) -> Option<&DatasetImage> {
        self.images.iter().find(|i| i.id == id)
    }

    pub fn scanner(&self, name: &str) -> Option<&Scanner> {
        self.scanners.iter().find(|s| s.name == name)
    }
}

/// A manifest with the directory its images are in.
#[derive(Debug, Clone)]
pub struct LoadedDataset {
    pub manifest: DatasetManifest,
    pub images_dir: PathBuf,
}

impl LoadedDataset {
    pub fn path_of(&self, image: &DatasetImage) -> PathBuf {
        self.images_dir.join(&image.file_name)
    }

    pub fn image(&self, id: u32) -> Result<&DatasetImage, StageError> {
        self.manifest.image(id).ok_or_else(|| StageError::msg(format!("image id {id} is not in the dataset")))
    }

    pub fn dir(&self) -> &Path {
        &self.images_dir
    }
}
