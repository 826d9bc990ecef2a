//! `split.json`: which image ids train, validate and test.

use engine::{Artifact, StageError};
use serde::{Deserialize, Serialize};

pub const FILE: &str = "split.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSets {
    pub train: Vec<u32>,
    /// Carved from the training pool: model selection and threshold choice.
    pub val: Vec<u32>,
    pub test: Vec<u32>,
    /// Unlabelled images (kept out of all three), for unsupervised domain adaptation.
    pub unlabelled: Vec<u32>,
    /// How the split was made, in words.
    pub description: String,
    /// Images of unlabelled scanners whose held-out labels this split uses (test images, and the
    /// oracle's training and validation images): their labels are in the dataset's
    /// `heldout.json`, never in `dataset.json`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heldout: Vec<u32>,
}

impl SplitSets {
    pub fn load(artifact: &Artifact) -> Result<SplitSets, StageError> {
        super::read_json(&artifact.dir.join(FILE))
    }

    /// The set an image belongs to (`train`, `val`, `test`), if any.
    pub fn role_of(&self, id: u32) -> Option<&'static str> {
        if self.train.contains(&id) {
            Some("train")
        } else if self.val.contains(&id) {
            Some("val")
        } else if self.test.contains(&id) {
            Some("test")
        } else {
            None
        }
    }
}
