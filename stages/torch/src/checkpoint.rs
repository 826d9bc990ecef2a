//! The train stage's epoch checkpoints in its resume directory, each committed as a whole.
//!
//! A finished epoch N leaves `epoch-000N/` holding the weights (`last.safetensors`), the
//! optimiser state (`optimizer.safetensors`), the best weights so far (`best.safetensors`, a hard
//! link to the previous checkpoint's when they did not improve) and `state.json` (the epoch
//! counter, step, best F1 and every epoch's metrics). It is written as `epoch-000N.partial/`;
//! the files and the directory are fsynced, the directory is renamed into place and the resume
//! directory fsynced. A kill at any moment therefore leaves the previous epoch's checkpoint or
//! this one, never the weights of one epoch with the counter of another (which trained an epoch
//! twice and cached a result no uninterrupted run gives). Older checkpoints go after the rename;
//! a resume takes the highest committed epoch and discards partial ones.

use std::fs::File;
use std::path::{Path, PathBuf};

use engine::StageError;
use serde::{Deserialize, Serialize};

use crate::fault;

pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
pub const OPTIMIZER: &str = "optimizer.safetensors";
pub const STATE: &str = "state.json";

const PARTIAL: &str = ".partial";

/// One row of `metrics.parquet` (one per epoch). Floats are kept as their shortest exact
/// decimal strings: serde_json's default number parser may round the last bit, and a resumed
/// run must publish exactly the metrics an uninterrupted one does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    pub epoch: u32,
    pub step: u64,
    #[serde(with = "exact")]
    pub lr: f64,
    #[serde(with = "exact")]
    pub loss: f64,
    #[serde(with = "exact")]
    pub cls_loss: f64,
    #[serde(with = "exact")]
    pub box_loss: f64,
    #[serde(with = "exact_opt")]
    pub val_loss: Option<f64>,
    #[serde(with = "exact_opt")]
    pub val_f1: Option<f64>,
    #[serde(with = "exact_opt")]
    pub val_threshold: Option<f64>,
    #[serde(with = "exact")]
    pub img_per_s: f64,
    #[serde(with = "exact")]
    pub seconds: f64,
    /// Domain-adversarial training: mean domain loss and classifier accuracy of the epoch.
    #[serde(default, with = "exact_opt", skip_serializing_if = "Option::is_none")]
    pub domain_loss: Option<f64>,
    #[serde(default, with = "exact_opt", skip_serializing_if = "Option::is_none")]
    pub domain_accuracy: Option<f64>,
}

/// The training losses of one logging window (`log_every` steps, or the rest of an epoch):
/// their means, logged to TensorBoard at the window's last global step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    pub step: u64,
    #[serde(with = "exact")]
    pub loss: f64,
    #[serde(with = "exact")]
    pub cls_loss: f64,
    #[serde(with = "exact")]
    pub box_loss: f64,
}

/// What a resumed run needs besides weights and optimiser state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    pub epochs_done: u32,
    pub global_step: u64,
    #[serde(with = "exact_opt")]
    pub best_f1: Option<f64>,
    pub best_epoch: Option<u32>,
    pub rows: Vec<MetricsRow>,
    /// Every logging window of the committed epochs.
    #[serde(default)]
    pub steps: Vec<StepRow>,
}

/// `f64` as the shortest decimal string that parses back to the same bits.
mod exact {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:?}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|_| serde::de::Error::custom(format!("`{text}` is not a number")))
    }
}

mod exact_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::exact::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => {
                text.parse().map(Some).map_err(|_| serde::de::Error::custom(format!("`{text}` is not a number")))
            }
        }
    }
}

/// A committed checkpoint.
#[derive(Debug, Clone)]
pub struct Committed {
    pub dir: PathBuf,
    pub state: TrainState,
}

/// The best weights of a new checkpoint: this epoch's, or the previous checkpoint's unchanged.
pub enum Best<'a> {
    ThisEpoch,
    Previous(&'a Path),
}

pub struct Checkpoints {
    resume: PathBuf,
}

fn epoch_dir_name(epoch: u32) -> String {
    format!("epoch-{epoch:04}")
}

fn committed_epoch(name: &str) -> Option<u32> {
    name.strip_prefix("epoch-")?.parse().ok()
}

impl Checkpoints {
    pub fn new(resume: &Path) -> Checkpoints {
        Checkpoints { resume: resume.to_path_buf() }
    }

    /// The latest committed checkpoint (partial ones are removed first). Its state must read
    /// back: a damaged `state.json` is an error naming it, never a silent restart from scratch.
    pub fn latest(&self) -> Result<Option<Committed>, StageError> {
        let mut best: Option<(u32, PathBuf)> = None;
        let entries = std::fs::read_dir(&self.resume).map_err(|e| StageError::io(&self.resume, e))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(PARTIAL) {
                let _ = std::fs::remove_dir_all(e.path());
            } else if let Some(epoch) = committed_epoch(&name)
                && best.as_ref().is_none_or(|(b, _)| epoch > *b)
            {
                best = Some((epoch, e.path()));
            }
        }
        let Some((epoch, dir)) = best else { return Ok(None) };
        let path = dir.join(STATE);
        let damaged = |why: String| {
            StageError::msg(format!(
                "{}: the checkpoint of epoch {epoch} is damaged ({why}); delete {} to train this stage \
                 from the start",
                path.display(),
                self.resume.display()
            ))
        };
        let bytes = std::fs::read(&path).map_err(|e| damaged(e.to_string()))?;
        let state: TrainState = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        if state.epochs_done != epoch || state.rows.len() != epoch as usize {
            return Err(damaged(format!(
                "it records {} epoch(s) done and {} metrics rows",
                state.epochs_done,
                state.rows.len()
            )));
        }
        for f in [LAST, BEST, OPTIMIZER] {
            if !dir.join(f).is_file() {
                return Err(damaged(format!("{f} is missing")));
            }
        }
        Ok(Some(Committed { dir, state }))
    }

    /// Writes and commits the checkpoint of epoch `state.epochs_done` (with `extra` files, e.g.
    /// the domain classifier's state, committed together); returns its directory.
    pub fn commit(
        &self,
        state: &TrainState,
        weights: &[u8],
        optimizer: &[u8],
        best: Best<'_>,
        extra: &[(&str, Vec<u8>)],
    ) -> Result<PathBuf, StageError> {
        let epoch = state.epochs_done;
        let dir = self.resume.join(epoch_dir_name(epoch));
        let partial = self.resume.join(format!("{}{PARTIAL}", epoch_dir_name(epoch)));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).map_err(|e| StageError::io(&partial, e))?;
        let write = |name: &str, bytes: &[u8]| -> Result<(), StageError> {
            let path = partial.join(name);
            write_synced(&path, bytes).map_err(|e| StageError::io(&path, e))
        };
        let point = |name: &str, path: &Path| fault::at(name, epoch).map_err(|e| StageError::io(path, e));
        write(LAST, weights)?;
        point("weights", &partial.join(LAST))?;
        write(OPTIMIZER, optimizer)?;
        point("optimizer", &partial.join(OPTIMIZER))?;
        for (name, bytes) in extra {
            write(name, bytes)?;
        }
        let best_path = partial.join(BEST);
        let linked = match best {
            Best::ThisEpoch => std::fs::hard_link(partial.join(LAST), &best_path),
            Best::Previous(p) => std::fs::hard_link(p, &best_path),
        };
        if linked.is_err() {
            // A file system without hard links: copy.
            let from = match best {
                Best::ThisEpoch => partial.join(LAST),
                Best::Previous(p) => p.to_path_buf(),
            };
            let bytes = std::fs::read(&from).map_err(|e| StageError::io(&from, e))?;
            write(BEST, &bytes)?;
        }
        point("best", &best_path)?;
        let json = serde_json::to_vec_pretty(state).map_err(|e| StageError::msg(e.to_string()))?;
        write(STATE, &json)?;
        point("state", &partial.join(STATE))?;
        sync_dir(&partial).map_err(|e| StageError::io(&partial, e))?;
        point("synced", &partial)?;
        std::fs::rename(&partial, &dir).map_err(|e| StageError::io(&dir, e))?;
        sync_dir(&self.resume).map_err(|e| StageError::io(&self.resume, e))?;
        point("renamed", &dir)?;
        for e in std::fs::read_dir(&self.resume).map_err(|e| StageError::io(&self.resume, e))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if committed_epoch(&name).is_some_and(|n| n < epoch) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        point("cleaned", &self.resume)?;
        Ok(dir)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(epochs: u32) -> TrainState {
        let row = |e: u32| MetricsRow {
            epoch: e,
            step: 10 * e as u64,
            lr: 0.1,
            loss: 1.0,
            cls_loss: 0.5,
            box_loss: 0.5,
            val_loss: Some(1.0),
            val_f1: Some(0.5),
            val_threshold: Some(0.3),
            img_per_s: 1.0,
            seconds: 1.0,
            domain_loss: e.is_multiple_of(2).then_some(0.69),
            domain_accuracy: e.is_multiple_of(2).then_some(0.5),
        };
        TrainState {
            epochs_done: epochs,
            global_step: 10 * epochs as u64,
            best_f1: Some(0.5),
            best_epoch: Some(1),
            rows: (1..=epochs).map(row).collect(),
            steps: (1..=epochs)
                .map(|e| StepRow { step: 10 * e as u64, loss: 0.1 + 1.0 / 3.0, cls_loss: 0.25, box_loss: 1e-7 })
                .collect(),
        }
    }

    #[test]
    fn commits_replace_the_previous_checkpoint_and_partial_ones_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path());
        assert!(c.latest().unwrap().is_none());
        let first = c.commit(&state(1), b"w1", b"o1", Best::ThisEpoch, &[]).unwrap();
        let second = c
            .commit(&state(2), b"w2", b"o2", Best::Previous(&first.join(BEST)), &[("extra.bin", b"x".to_vec())])
            .unwrap();
        assert_eq!(std::fs::read(second.join("extra.bin")).unwrap(), b"x");
        assert!(!first.exists(), "the older checkpoint is removed");
        assert_eq!(std::fs::read(second.join(BEST)).unwrap(), b"w1", "best kept from epoch 1");
        assert_eq!(std::fs::read(second.join(LAST)).unwrap(), b"w2");
        // A partial epoch 3 (a kill before the rename) is ignored and removed.
        std::fs::create_dir_all(dir.path().join("epoch-0003.partial")).unwrap();
        let latest = c.latest().unwrap().unwrap();
        assert_eq!((latest.dir, latest.state), (second, state(2)));
        assert!(!dir.path().join("epoch-0003.partial").exists());
    }

    #[test]
    fn state_floats_round_trip_bit_for_bit() {
        let mut s = state(2);
        // serde_json's default number parser reads this one back 1 ULP off (…727e-5).
        s.rows[1].lr = 1.1698131052939729e-5;
        s.rows[0].val_loss = None;
        s.best_f1 = Some(0.1 + 0.2);
        let back: TrainState = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.rows[1].lr.to_bits(), 1.1698131052939729e-5f64.to_bits());
    }

    #[test]
    fn a_damaged_state_is_an_error_naming_the_file_not_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path());
        let d = c.commit(&state(1), b"w", b"o", Best::ThisEpoch, &[]).unwrap();
        std::fs::write(d.join(STATE), b"{\"epochs_done\": 1, \"glob").unwrap();
        let e = c.latest().unwrap_err().to_string();
        assert!(e.contains("epoch-0001/state.json") && e.contains("damaged") && e.contains("delete"), "{e}");
        std::fs::write(d.join(STATE), serde_json::to_vec(&state(2)).unwrap()).unwrap();
        assert!(c.latest().unwrap_err().to_string().contains("2 epoch(s) done"));
    }
}
