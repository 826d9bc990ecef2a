//! One error type for everything wrong in an experiment file: it names the file, line and
//! column, says what is wrong, and where possible what to write instead.

use std::fmt;
use std::path::PathBuf;

use super::source::Location;

#[derive(Debug, Clone, thiserror::Error)]
pub struct SpecError {
    /// The file at fault (also inside `location` when the exact place is known).
    pub file: PathBuf,
    pub location: Option<Location>,
    pub message: String,
    /// What to do about it ("did you mean `lr`?").
    pub help: Option<String>,
}

impl SpecError {
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self { file: file.into(), location: None, message: message.into(), help: None }
    }

    pub fn at(location: Option<&Location>, file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self { file: file.into(), location: location.cloned(), message: message.into(), help: None }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) => write!(f, "{loc}: {}", self.message)?,
            None => write!(f, "{}: {}", self.file.display(), self.message)?,
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// The closest candidate to a misspelt name, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(given, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("lrr", ["lr", "epochs", "batch_size"]), Some("lr"));
        assert_eq!(did_you_mean("epoch", ["lr", "epochs"]), Some("epochs"));
        assert_eq!(did_you_mean("zzz", ["lr", "epochs"]), None);
    }
}
