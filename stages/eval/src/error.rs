//! Everything that can go wrong while reading or scoring, always naming the file and, where there
//! is one, the image entry, so a user can find the line to fix.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a valid {what}: {message}", path.display())]
    Json { path: PathBuf, what: &'static str, message: String },
    #[error("{}: image `{image}`: {message}", path.display())]
    Entry { path: PathBuf, image: String, message: String },
    #[error(
        "image `{image}`: its resolution (µm per pixel) is unknown, so pixel ground truth cannot be \
         compared with millimetre detections; put the image file beside the ground truth or pass --um-per-px"
    )]
    MissingResolution { image: String },
    #[error("image `{image}`: resolution {um_per_px} µm/px is not a positive finite number")]
    BadResolution { image: String, um_per_px: f64 },
    #[error(transparent)]
    Data(#[from] midog_data::DataError),
}

impl EvalError {
    pub fn io(path: &Path, source: std::io::Error) -> EvalError {
        EvalError::Io { path: path.to_path_buf(), source }
    }

    pub fn entry(path: &Path, image: &str, message: impl Into<String>) -> EvalError {
        EvalError::Entry { path: path.to_path_buf(), image: image.to_string(), message: message.into() }
    }
}
