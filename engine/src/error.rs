//! The two errors a stage kind deals in: [`ParamError`] (a bad parameter, located by its path
//! inside the stage table) and [`StageError`] (why a running stage failed). A leaf module, so the
//! stage contract, the context and the schema checks can all use them without importing each other.

use std::path::PathBuf;

/// A problem with one parameter, located by its path inside the stage table.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    pub path: Vec<String>,
    pub message: String,
    pub help: Option<String>,
}

impl ParamError {
    pub fn new(path: &[&str], message: impl Into<String>) -> Self {
        ParamError { path: path.iter().map(|s| s.to_string()).collect(), message: message.into(), help: None }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Why a stage failed. Domain crates box their own error types into `Domain`.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("cancelled")]
    Cancelled,
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Domain(Box<dyn std::error::Error + Send + Sync>),
}

impl StageError {
    pub fn msg(message: impl Into<String>) -> Self {
        StageError::Message(message.into())
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StageError::Io { path: path.into(), source }
    }

    pub fn domain(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StageError::Domain(Box::new(e))
    }
}
