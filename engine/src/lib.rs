//! A generic declarative pipeline engine.
//!
//! An experiment is a TOML file of stage tables; the engine types each stage's params through
//! the [`StageDef`] of its kind, wires the stages into a DAG, keys each stage by a blake3 hash of
//! everything that determines its output ([`key`]), and runs only the stages whose key is not
//! in the content-addressed [`Store`] yet. It knows nothing about any domain: products register
//! their stage kinds in a [`Registry`] and add their own commands next to [`cli::EngineCommand`].
//!
//! Layers, lowest first (a module uses only those above it in this list):
//! `error`, `paramdoc`, `atomic`, `key`, `inputs`, `spec` (leaves) → `schema_check`, `typed`,
//! `record`, `filedigest`, `explain`, `progress` → `store` → `exec::events`, `exec::job`, `context`
//! → `stage` → `plan` → `exec` → `cli`.

pub mod atomic;
pub mod cli;
pub mod context;
pub mod error;
pub mod exec;
pub mod explain;
pub mod filedigest;
pub mod inputs;
pub mod key;
mod paramdoc;
pub mod plan;
pub mod progress;
pub mod record;
mod schema_check;
pub mod spec;
pub mod stage;
pub mod store;
mod typed;

pub use atomic::write_atomic;
pub use context::{Progress, StageContext};
pub use error::{ParamError, StageError};
pub use inputs::{Artifact, ExternalFile, ExternalInput};
pub use key::{KeyInputs, StageKey};
pub use paramdoc::ParamDoc;
pub use plan::Plan;
pub use spec::{Experiment, SpecError};
pub use stage::{Registry, Resources, Stage, StageDef};
pub use store::{Pin, Store};
