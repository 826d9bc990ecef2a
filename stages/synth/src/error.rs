use std::path::{Path, PathBuf};

/// Everything that can go wrong while generating or reading back a synthetic dataset; every
/// variant names the file it concerns so a failed run says where to look.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Encode { path: PathBuf, message: String },
    /// Every measurement of a generated image is in µm, so its file must say how large a pixel is.
    #[error("{}: the TIFF states no resolution (µm per pixel)", path.display())]
    NoResolution { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Data {
        path: PathBuf,
        #[source]
        source: midog_data::DataError,
    },
    #[error("invalid synthetic dataset configuration: {0}")]
    Config(String),
}

impl SynthError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        SynthError::Io { path: path.to_path_buf(), source }
    }

    pub fn encode(path: &Path, message: impl Into<String>) -> Self {
        SynthError::Encode { path: path.to_path_buf(), message: message.into() }
    }
}
