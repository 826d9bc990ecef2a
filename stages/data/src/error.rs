use std::fmt;
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
    /// The file is not a TIFF this reader supports, or its directory (IFD) structure is broken.
    #[error("{}: TIFF: {message}", path.display())]
    Tiff { path: PathBuf, message: String },
    /// One tile or strip could not be read or decoded (truncated file, corrupt compressed data).
    #[error("{}: level {level}, {kind} {index}: {message}", path.display())]
    TiffChunk { path: PathBuf, level: usize, kind: ChunkKind, index: usize, message: String },
    /// The patch loader was started with inconsistent inputs (a spec naming no image, a bad size).
    #[error("patch loader: {message}")]
    LoaderConfig { message: String },
    /// A loader worker failed outside any file (a bug): the batch is reported instead of hanging.
    #[error("patch loader: batch {batch}: {message}")]
    LoaderWorker { batch: usize, message: String },
}

/// Whether a TIFF stores its pixels in tiles or in strips of whole rows (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    Tile,
    Strip,
}

impl fmt::Display for ChunkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkKind::Tile => "tile",
            ChunkKind::Strip => "strip",
        })
    }
}

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io { path: path.to_path_buf(), source }
    }

    pub fn invalid(path: &Path, message: impl Into<String>) -> Self {
        DataError::Invalid { path: path.to_path_buf(), message: message.into() }
    }

    pub fn tiff(path: &Path, message: impl Into<String>) -> Self {
        DataError::Tiff { path: path.to_path_buf(), message: message.into() }
    }
}
