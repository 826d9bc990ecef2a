use std::path::{Path, PathBuf};

/// Everything that can be wrong with MIDOG data, naming the file (and tile or annotation).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a valid MIDOG.json: {message}", path.display())]
    MidogJson { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io { path: path.to_path_buf(), source }
    }

    pub fn invalid(path: &Path, message: impl Into<String>) -> Self {
        DataError::Invalid { path: path.to_path_buf(), message: message.into() }
    }
}
