//! The open TIFF file, read only with positional reads so that any number of threads can read
//! through one `&File` at once (no shared cursor, no lock).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::DataError;

#[derive(Debug)]
pub(crate) struct Source {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Source {
    pub(crate) fn open(path: &Path) -> Result<Source, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        Ok(Source { path: path.to_path_buf(), file, len })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Checks that `count` bytes at `offset` lie inside the file, before anything is allocated
    /// for them (a corrupt byte count must not trigger a huge allocation).
    pub(crate) fn check_range(&self, offset: u64, count: u64) -> Result<(), String> {
        match offset.checked_add(count) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(format!(
                "{count} bytes at offset {offset} extend past the end of the file ({} bytes); truncated?",
                self.len
            )),
        }
    }

    /// Fills `buf` from `offset`; a short file is an error message, not a panic.
    pub(crate) fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        self.check_range(offset, buf.len() as u64)?;
        self.file.read_exact_at(buf, offset).map_err(|e| format!("reading {} bytes at offset {offset}: {e}", buf.len()))
    }

    /// Reads `count` bytes at `offset` into a new vector.
    pub(crate) fn read_vec(&self, offset: u64, count: u64) -> Result<Vec<u8>, String> {
        self.check_range(offset, count)?;
        let mut buf = vec![0u8; count as usize];
        self.read_exact_at(offset, &mut buf)?;
        Ok(buf)
    }
}
