//! Why a picture could not be made, naming the output file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{}: charts are written as PNG; give the file a .png extension", path.display())]
    NotPng { path: PathBuf },
    #[error("{}: image size {width} × {height} has no pixels", path.display())]
    EmptySize { path: PathBuf, width: u32, height: u32 },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: drawing failed: {message}", path.display())]
    Draw { path: PathBuf, message: String },
    #[error("bar chart `{title}`: series `{series}` has {got} values for {expected} groups")]
    SeriesLength { title: String, series: String, expected: usize, got: usize },
    #[error("RGB buffer of {got} bytes does not fit a {width} × {height} image ({expected} bytes)")]
    BufferSize { width: u32, height: u32, expected: usize, got: usize },
    #[error("drawing on an in-memory image failed: {message}")]
    Canvas { message: String },
    #[error("the bundled DejaVu Sans font could not be registered")]
    Font,
}
