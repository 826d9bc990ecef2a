//! The results view: for each experiment, a tree of links to the cache entries its last run
//! used or made, at paths a user can type, bookmark and cite (`results/quickstart/report/
//! report.html`), as Bazel's `bazel-bin` or Nix's `result`.
//!
//! ```text
//! results/                           --results-dir / PIPELINE_RESULTS (default ./results)
//!   quickstart -> .views/quickstart/g.<pid>.<n>      swapped atomically at the end of a run
//!   .views/quickstart/
//!     lock                           held while the view is replaced
//!     g.<pid>.<n>/                   one generation of the view:
//!       .index.json                  what the view holds ([`ViewIndex`]): keys, times, the store
//!       report -> /abs/cache/objects/ab/<key>/out
//!       train  -> …
//!   hyperparams -> .views/hyperparams/g.…   an experiment with variants: one level more,
//!       lr=0.0001/train -> …                 <variant>/<stage>
//! ```
//!
//! Rules (tested end to end in `tests/tests/results_view.rs`):
//! - A view changes only at the end of a `pipeline run`, in one rename: it shows the previous
//!   run's entries plus every stage this run finished (ran or found cached); a stage whose attempt
//!   failed keeps its previous entry. A killed run leaves the previous view as it was.
//! - Each experiment has its own view and lock: runs of different experiments never touch each
//!   other's, two runs of the same one replace it one after the other.
//! - Every view is a root of the store it points into (`store/roots.rs`): `pipeline gc` keeps
//!   what it points to, and with `--ignore-results` it first removes the view's links to what it
//!   is about to remove. A view is replaced under the store's shared gc lock and only with
//!   entries that exist at that moment, so it never points at a removed entry.
//! - Names are file-system safe ([`crate::store::slug`]); the view is per experiment *name*
//!   (as the store's last-run records are): two files with the same name share one.

mod publish;

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use self::publish::{Finished, ViewUpdate, forget, publish};
use crate::key::StageKey;
use crate::store::slug;

/// The format of `.index.json`.
pub const INDEX_FORMAT: u32 = 1;
/// The index file's name inside a view (no stage slug starts with a dot).
pub const INDEX_FILE: &str = ".index.json";
const VIEWS_DIR: &str = ".views";

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("results directory {}: is a file, not a directory (give another --results-dir, or remove it)", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{} is not a results view made by `pipeline run` (move it away; the view of this experiment goes there)", path.display())]
    NotAView { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: unreadable results view index: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ViewError + '_ {
    move |source| ViewError::Io { path: path.to_path_buf(), source }
}

/// One stage's entry in a view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewEntry {
    pub variant: String,
    pub stage: String,
    pub kind: String,
    pub key: StageKey,
    /// The link's path inside the view: `report`, or `lr=0.0001/report` with variants.
    pub path: String,
    /// When the cache entry was made (the end of the stage's run), Unix seconds.
    pub made_unix: u64,
    /// When the run that put it in the view ended, Unix seconds.
    pub run_unix: u64,
    /// That run's id: [`ViewIndex::run`] unless the latest run did not finish this stage.
    pub run: String,
    /// The stage kind's main files that the entry has (a report's HTML, a checkpoint).
    #[serde(default)]
    pub highlights: Vec<String>,
}

/// `.index.json`: what a view holds. `store` and `keys` are what the store's gc reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewIndex {
    pub format: u32,
    pub experiment: String,
    /// The experiment file of the latest run.
    pub file: PathBuf,
    /// The root of the store the links point into.
    pub store: PathBuf,
    /// The latest run's end, Unix seconds.
    pub updated_unix: u64,
    /// The latest run's id (`<unix ms>.<pid>`).
    pub run: String,
    /// Whether stages sit under a directory per variant (the experiment has a sweep).
    pub by_variant: bool,
    /// Every key the view points to.
    pub keys: Vec<StageKey>,
    pub entries: Vec<ViewEntry>,
}

impl ViewIndex {
    pub fn entry(&self, variant: &str, stage: &str) -> Option<&ViewEntry> {
        self.entries.iter().find(|e| e.variant == variant && e.stage == stage)
    }

    /// Whether the latest run finished this entry (as opposed to an earlier one).
    pub fn is_latest(&self, e: &ViewEntry) -> bool {
        e.run == self.run
    }
}

/// A directory holding results views.
#[derive(Debug, Clone)]
pub struct ResultsDir {
    root: PathBuf,
}

impl ResultsDir {
    /// Opens `path` for writing views, creating it when missing.
    pub fn create(path: &Path) -> Result<ResultsDir, ViewError> {
        if path.exists() && !path.is_dir() {
            return Err(ViewError::NotADirectory { path: path.to_path_buf() });
        }
        fs::create_dir_all(path.join(VIEWS_DIR)).map_err(io_err(path))?;
        let root = path.canonicalize().map_err(io_err(path))?;
        Ok(ResultsDir { root })
    }

    /// Opens `path` for reading views: `None` when there is none yet.
    pub fn existing(path: &Path) -> Result<Option<ResultsDir>, ViewError> {
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => Ok(Some(ResultsDir { root: path.canonicalize().map_err(io_err(path))? })),
            Ok(_) => Err(ViewError::NotADirectory { path: path.to_path_buf() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ViewError::Io { path: path.to_path_buf(), source: e }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an experiment's view is: `<results>/<experiment>`.
    pub fn view_path(&self, experiment: &str) -> PathBuf {
        self.root.join(slug(experiment))
    }

    /// The directory holding an experiment's generations and lock.
    fn generations_dir(&self, experiment: &str) -> PathBuf {
        self.root.join(VIEWS_DIR).join(slug(experiment))
    }

    /// The current view of an experiment, if it has one.
    pub fn read(&self, experiment: &str) -> Result<Option<ViewIndex>, ViewError> {
        read_index(&self.view_path(experiment).join(INDEX_FILE))
    }
}

/// Reads an index file: `None` when it does not exist.
pub(crate) fn read_index(path: &Path) -> Result<Option<ViewIndex>, ViewError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ViewError::Corrupt { path: path.to_path_buf(), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ViewError::Io { path: path.to_path_buf(), source: e }),
    }
}

/// A stage's path inside a view.
pub fn entry_path(by_variant: bool, variant: &str, stage: &str) -> String {
    if by_variant { format!("{}/{}", slug(variant), slug(stage)) } else { slug(stage) }
}
