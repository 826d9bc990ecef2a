//! Advisory locks in `locks/`, released by the kernel when their holder dies: one per key (the
//! process computing a key holds it; others wait for it instead of computing it twice), and the
//! store-wide gc lock (`gc` holds it exclusively; creating a pin takes it shared, so a pin is
//! never created while gc decides what to remove).

use std::fs::{self, File};

use super::{Store, StoreError, io_err};
use crate::key::StageKey;

/// An advisory lock on one key or on the store, released on drop or when the process dies.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
}

const GC_LOCK: &str = "gc.lock";

impl Store {
    fn lock_file(&self, name: &str) -> Result<File, StoreError> {
        let path = self.root.join("locks").join(name);
        File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))
    }

    /// Blocks until this process holds the key.
    pub fn lock(&self, key: &StageKey) -> Result<KeyLock, StoreError> {
        let file = self.lock_file(&format!("{key}.lock"))?;
        file.lock().map_err(|source| StoreError::Io { path: self.root.join("locks"), source })?;
        Ok(KeyLock { _file: file })
    }

    /// Takes the key's lock if nobody holds it.
    pub fn try_lock(&self, key: &StageKey) -> Result<Option<KeyLock>, StoreError> {
        let file = self.lock_file(&format!("{key}.lock"))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(source)) => Err(StoreError::Io { path: self.root.join("locks"), source }),
        }
    }

    /// The gc lock: exclusive for `gc`, shared while a pin is created. Blocks (and says so
    /// when it has to wait).
    pub(super) fn gc_lock(&self, exclusive: bool) -> Result<KeyLock, StoreError> {
        let path = self.root.join("locks").join(GC_LOCK);
        let file = self.lock_file(GC_LOCK)?;
        let now = if exclusive { file.try_lock() } else { file.try_lock_shared() };
        match now {
            Ok(()) => return Ok(KeyLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(source)) => return Err(StoreError::Io { path, source }),
        }
        if exclusive {
            tracing::info!("waiting for the pipelines that are pinning their cache entries right now");
        } else {
            tracing::info!("waiting for a `pipeline gc` on this cache to finish");
        }
        let locked = if exclusive { file.lock() } else { file.lock_shared() };
        locked.map_err(|source| StoreError::Io { path, source })?;
        Ok(KeyLock { _file: file })
    }
}
