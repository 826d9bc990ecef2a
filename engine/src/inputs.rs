//! What a stage reads: the external files it declares ([`ExternalInput`]), the same files with
//! the digests that entered its key ([`ExternalFile`]), and its published upstream outputs
//! ([`Artifact`]). Plain data shared by the stage contract, the plan, job files and contexts.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::key::StageKey;

/// A file outside the cache that a stage reads; its content digest enters the stage key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalInput {
    /// Stable logical name (for example the file name relative to a dataset root): in the key
    /// instead of the absolute path, so moving a checkout does not invalidate anything.
    pub name: String,
    pub path: PathBuf,
}

/// An external file with the digest that entered the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExternalFile {
    pub name: String,
    pub path: PathBuf,
    pub digest: String,
}

/// A published upstream artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub kind: String,
    pub key: StageKey,
    /// The artifact's files (read-only).
    pub dir: PathBuf,
}
