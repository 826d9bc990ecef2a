//! Errors of the model crate.

use std::path::PathBuf;

/// Everything that can go wrong with configs, weights files and checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("invalid targets: {0}")]
    Targets(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a readable safetensors file: {source}", path.display())]
    SafeTensors { path: PathBuf, source: safetensors::SafeTensorError },
    #[error("encoding tensors as safetensors: {0}")]
    SafeTensorsEncode(safetensors::SafeTensorError),
    #[error("{}: tensor `{name}` has dtype {dtype}, which is not supported", path.display())]
    UnsupportedDtype { path: PathBuf, name: String, dtype: String },
    #[error("{}: {}", path.display(), describe_mismatch(missing, unexpected, mis_shaped))]
    WeightsMismatch {
        path: PathBuf,
        /// Variables of the model that the file lacks.
        missing: Vec<String>,
        /// Tensors of the file that the model does not have.
        unexpected: Vec<String>,
        /// `name: file shape [..] but the model expects [..]`.
        mis_shaped: Vec<String>,
    },
    #[error("{}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

fn list(what: &str, names: &[String]) -> Option<String> {
    const SHOWN: usize = 8;
    if names.is_empty() {
        return None;
    }
    let mut s = format!("{} {what}: {}", names.len(), names[..names.len().min(SHOWN)].join(", "));
    if names.len() > SHOWN {
        s.push_str(&format!(", … ({} more)", names.len() - SHOWN));
    }
    Some(s)
}

fn describe_mismatch(missing: &[String], unexpected: &[String], mis_shaped: &[String]) -> String {
    let parts: Vec<String> = [
        list("tensors missing from the file", missing),
        list("unexpected tensors in the file", unexpected),
        list("tensors with the wrong shape", mis_shaped),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!("weights do not fit the model: {}", parts.join("; "))
}

impl From<midog_model_config::ConfigError> for Error {
    fn from(e: midog_model_config::ConfigError) -> Self {
        Error::Config(e.0)
    }
}
