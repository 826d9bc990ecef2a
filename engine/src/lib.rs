//! A generic declarative pipeline engine.
//!
//! An experiment is a TOML file of stage tables; the engine types each stage's params through
//! the [`StageDef`] of its kind, wires the stages into a DAG, keys each stage by a blake3 hash of
//! everything that determines its output ([`key`]), and runs only the stages whose key is not
//! in the content-addressed [`Store`] yet. It knows nothing about any domain: products register
//! their stage kinds in a [`Registry`] and add their own commands next to [`cli::EngineCommand`].

pub mod cli;
pub mod context;
pub mod exec;
pub mod explain;
pub mod filedigest;
pub mod key;
mod paramdoc;
pub mod plan;
pub mod progress;
pub mod record;
mod schema_check;
pub mod spec;
pub mod stage;
pub mod store;

pub use context::{Artifact, ExternalFile, Progress, StageContext};
pub use key::{KeyInputs, StageKey};
pub use plan::Plan;
pub use spec::{Experiment, SpecError};
pub use stage::{ExternalInput, ParamDoc, ParamError, Registry, Resources, Stage, StageDef, StageError};
pub use store::Store;
