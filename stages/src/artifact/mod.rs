//! What stages hand to one another: small typed files inside their cache entries, each with a
//! loader that names the file when it is missing or malformed.

pub mod dataset_manifest;
pub mod heldout;
pub mod inferred;
pub mod output_names;
pub mod sample_plan;
pub mod scores;
pub mod split_sets;
pub mod tables;

use std::path::Path;

use engine::StageError;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use dataset_manifest::{DatasetImage, DatasetManifest};
pub use sample_plan::SamplePlan;
pub use split_sets::SplitSets;

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), StageError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StageError::msg(format!("{}: {e}", path.display())))?;
    std::fs::write(path, bytes).map_err(|e| StageError::io(path, e))
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, StageError> {
    let bytes = std::fs::read(path).map_err(|e| StageError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| StageError::msg(format!("{}: malformed ({e})", path.display())))
}
