//! `heldout.json`: the labels of images whose scanner is unlabelled, when they exist (a synthetic
//! set's GT450, or `dataset.heldout_labels` for real data). They are kept out of `dataset.json` so
//! that no stage that trains, validates or samples can read them by accident: the split stage
//! sees only their ids, the score stage scores the held-out test images with them, and only a
//! split with `heldout = "oracle"` (the upper bound of a domain-generalisation study) lets the
//! sample stage train on them.

use engine::{Artifact, StageError};
use serde::{Deserialize, Serialize};

pub const FILE: &str = "heldout.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldoutImage {
    pub id: u32,
    pub scanner: String,
    /// Mitotic figure boxes `[x1, y1, x2, y2]`, level-0 px.
    pub mitoses: Vec<[f64; 4]>,
    pub imposters: Vec<[f64; 4]>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeldoutLabels {
    pub images: Vec<HeldoutImage>,
}

impl HeldoutLabels {
    /// The held-out labels of a dataset artifact (empty when it has none).
    pub fn load(dataset: &Artifact) -> Result<HeldoutLabels, StageError> {
        let path = dataset.dir.join(FILE);
        if !path.is_file() {
            return Ok(HeldoutLabels::default());
        }
        super::read_json(&path)
    }

    pub fn image(&self, id: u32) -> Option<&HeldoutImage> {
        self.images.iter().find(|i| i.id == id)
    }

    pub fn ids(&self) -> Vec<u32> {
        self.images.iter().map(|i| i.id).collect()
    }
}
