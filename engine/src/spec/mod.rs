//! Experiment files: TOML with positions, `extends`, sweeps, and located errors.

pub mod document;
pub mod error;
pub mod experiment;
pub mod source;
pub mod sweep;

pub use document::Document;
pub use error::{SpecError, did_you_mean};
pub use experiment::{Experiment, SPEC_TABLES, StageTable};
pub use source::{Location, SourceMap};
pub use sweep::{DEFAULT_VARIANT, Override, SweptValue, Variant, display_value};
