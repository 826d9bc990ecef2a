//! Pins: the keys a live process uses or produces, which `gc` never removes.
//!
//! A pin is a file `pins/<pid>.<n>.json` listing its keys, locked by its holder for as long as
//! the [`Pin`] lives; the kernel drops the lock when the holder dies, so a pin can never outlive
//! its process. `pipeline run` pins every key of its plan (what it reads and what it produces,
//! in every variant); each worker pins its own key and its ancestors', which also covers cluster
//! jobs that outlive their `pipeline run`. Anything else that reads entries for a while (a
//! results viewer, an export) pins them the same way.
//!
//! Pins are created under the shared gc lock and gc lists them under the exclusive one, so a
//! pin is either seen by a gc or created after it has finished; a run pins its plan before it
//! looks at what is cached.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, io_err};
use crate::atomic::unique_suffix;
use crate::key::StageKey;
use crate::record::host_name;

/// Keys kept from `gc` while this value lives.
#[derive(Debug)]
pub struct Pin {
    path: PathBuf,
    _file: File,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PinFile {
    /// Who holds it, for messages ("pipeline run experiments/x.toml").
    pub holder: String,
    pub pid: u32,
    pub host: String,
    pub keys: Vec<StageKey>,
}

/// The live pins of a store, read by gc.
#[derive(Debug, Default)]
pub(super) struct Pinned {
    pub keys: HashSet<StageKey>,
    /// Holders of the live pins, e.g. "pipeline run exp.toml (pid 12 on n1)".
    pub holders: Vec<String>,
    /// Live pins whose keys cannot be read: gc must not remove anything.
    pub unreadable: Vec<PathBuf>,
}

impl Store {
    /// Pins `keys` for the lifetime of the returned value. Waits while a gc is removing.
    pub fn pin<'a>(&self, keys: impl IntoIterator<Item = &'a StageKey>, holder: &str) -> Result<Pin, StoreError> {
        let record = PinFile {
            holder: holder.to_string(),
            pid: std::process::id(),
            host: host_name(),
            keys: keys.into_iter().cloned().collect(),
        };
        let bytes = serde_json::to_vec(&record)
            .map_err(|e| StoreError::Corrupt { path: self.root.join("pins"), message: e.to_string() })?;
        let _no_gc = self.gc_lock(false)?;
        let path = self.root.join("pins").join(format!("{}.json", unique_suffix()));
        let mut file = File::create_new(&path).map_err(io_err(&path))?;
        // A new file nobody else has open: the lock is granted at once.
        if let Err(e) = file.lock().and_then(|()| file.write_all(&bytes)) {
            let _ = fs::remove_file(&path);
            return Err(StoreError::Io { path, source: e });
        }
        Ok(Pin { path, _file: file })
    }

    /// The keys of every live pin; pin files of dead holders are removed when `clean`.
    pub(super) fn pinned(&self, clean: bool) -> Pinned {
        let mut out = Pinned::default();
        for e in fs::read_dir(self.root.join("pins")).into_iter().flatten().flatten() {
            let path = e.path();
            let Ok(file) = File::options().read(true).write(true).open(&path) else { continue };
            match file.try_lock() {
                // Nobody holds it: its process is gone.
                Ok(()) => {
                    if clean {
                        let _ = fs::remove_file(&path);
                    }
                }
                Err(fs::TryLockError::WouldBlock) => {
                    let record = fs::read(&path).ok().and_then(|b| serde_json::from_slice::<PinFile>(&b).ok());
                    match record {
                        Some(r) => {
                            out.holders.push(format!("{} (pid {} on {})", r.holder, r.pid, r.host));
                            out.keys.extend(r.keys);
                        }
                        None => out.unreadable.push(path),
                    }
                }
                Err(fs::TryLockError::Error(_)) => {}
            }
        }
        out.holders.sort();
        out
    }
}
