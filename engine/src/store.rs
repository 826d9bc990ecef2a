//! The content-addressed store (default `./cache`):
//!
//! ```text
//! objects/ab/<key>/        a published entry: out/ (the stage's files), record.json, log.txt
//! tmp/<key>.<pid>.<n>/     entries being written; never read, removed when stale
//! work/<key>/              state an interrupted stage resumes from (e.g. epoch checkpoints)
//! locks/<key>.lock         per-key advisory locks (the kernel releases them when a process dies)
//! logs/<key>.log           the log of the latest attempt (kept for failures)
//! runs/<exp>/<variant>/<stage>.json   the last key of each named stage (for status/explain)
//! jobs/<key>.json          job files handed to workers (local processes or Slurm jobs)
//! memo/files.json          digests of external files by (device, inode, size, mtime)
//! memo/stages/<kind>/      facts a stage kind memoises by content (e.g. "this image decodes")
//! ```
//!
//! Publication is atomic: a stage writes into `tmp/`, every file and directory is fsynced, the
//! directory is renamed into `objects/`, and `objects/ab/` is fsynced. A killed run leaves at most
//! a stale `tmp/` directory, which the next holder of the key's lock removes.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::key::StageKey;
use crate::record::{LastRun, OutputFile, Record};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {}", path.display(), describe_io(source))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: corrupt record: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
}

fn describe_io(e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        "no space left on device (free some space, or run `pipeline gc`)".into()
    } else {
        e.to_string()
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An exclusive advisory lock on one key, released on drop or when the process dies.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
}

/// A directory in `tmp/` a stage writes its outputs into.
#[derive(Debug)]
pub struct TempEntry {
    pub dir: PathBuf,
    pub key: StageKey,
}

impl TempEntry {
    pub fn out_dir(&self) -> PathBuf {
        self.dir.join("out")
    }

    pub fn discard(self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        for sub in ["objects", "tmp", "work", "locks", "logs", "runs", "jobs", "memo"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        let root = root.canonicalize().map_err(io_err(root))?;
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn object_dir(&self, key: &StageKey) -> PathBuf {
        self.root.join("objects").join(&key.as_str()[..2]).join(key.as_str())
    }

    /// Where a published stage's files are.
    pub fn out_dir(&self, key: &StageKey) -> PathBuf {
        self.object_dir(key).join("out")
    }

    pub fn has(&self, key: &StageKey) -> bool {
        self.object_dir(key).join("record.json").is_file()
    }

    pub fn record(&self, key: &StageKey) -> Result<Option<Record>, StoreError> {
        let path = self.object_dir(key).join("record.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt { path, message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    pub fn resume_dir(&self, key: &StageKey) -> PathBuf {
        self.root.join("work").join(key.as_str())
    }

    pub fn log_path(&self, key: &StageKey) -> PathBuf {
        self.root.join("logs").join(format!("{key}.log"))
    }

    pub fn job_path(&self, key: &StageKey) -> PathBuf {
        self.root.join("jobs").join(format!("{key}.json"))
    }

    pub fn memo_path(&self) -> PathBuf {
        self.root.join("memo").join("files.json")
    }

    /// The directory where stages of `kind` keep facts memoised by content digest (see
    /// [`crate::StageContext::memo_dir`]).
    pub fn stage_memo_dir(&self, kind: &str) -> PathBuf {
        self.root.join("memo").join("stages").join(kind)
    }

    fn lock_file(&self, key: &StageKey) -> Result<File, StoreError> {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))
    }

    /// Blocks until this process holds the key.
    pub fn lock(&self, key: &StageKey) -> Result<KeyLock, StoreError> {
        let file = self.lock_file(key)?;
        file.lock().map_err(|source| StoreError::Io { path: self.root.join("locks"), source })?;
        Ok(KeyLock { _file: file })
    }

    /// Takes the key's lock if nobody holds it.
    pub fn try_lock(&self, key: &StageKey) -> Result<Option<KeyLock>, StoreError> {
        let file = self.lock_file(key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(source)) => Err(StoreError::Io { path: self.root.join("locks"), source }),
        }
    }

    /// Removes temporary directories of `key` left by killed runs. Call with the key's lock held.
    pub fn clean_stale_temps(&self, key: &StageKey, _lock: &KeyLock) {
        let prefix = format!("{key}.");
        if let Ok(entries) = fs::read_dir(self.root.join("tmp")) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// Removes every temporary entry whose key nobody holds (left by killed runs, possibly of
    /// keys no experiment uses any more). Cheap when `tmp/` is empty, as it almost always is.
    pub fn clean_stale(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(key) = name.split('.').next().and_then(StageKey::parse) else { continue };
            if let Ok(Some(lock)) = self.try_lock(&key) {
                let _ = fs::remove_dir_all(e.path());
                drop(lock);
            }
        }
    }

    /// A fresh temporary entry for `key`, with an empty `out/`. Call with the key's lock held.
    pub fn new_temp(&self, key: &StageKey, _lock: &KeyLock) -> Result<TempEntry, StoreError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join("tmp").join(format!("{key}.{}.{n}", std::process::id()));
        fs::create_dir_all(dir.join("out")).map_err(io_err(&dir))?;
        Ok(TempEntry { dir, key: key.clone() })
    }

    /// Atomically publishes a finished entry: hashes and fsyncs its files, writes the record,
    /// renames it into `objects/`. An existing entry (a forced rerun) is replaced.
    pub fn publish(
        &self,
        temp: TempEntry,
        mut record: Record,
        log: Option<&Path>,
        _lock: &KeyLock,
    ) -> Result<(), StoreError> {
        let out = temp.out_dir();
        record.outputs = list_outputs(&out)?;
        if let Some(log) = log
            && log.is_file()
        {
            let dest = temp.dir.join("log.txt");
            fs::copy(log, &dest).map_err(io_err(&dest))?;
        }
        let record_path = temp.dir.join("record.json");
        let bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| StoreError::Corrupt { path: record_path.clone(), message: e.to_string() })?;
        fs::write(&record_path, bytes).map_err(io_err(&record_path))?;
        fsync_tree(&temp.dir)?;

        let dest = self.object_dir(&temp.key);
        let parent = dest.parent().expect("object dirs have a parent");
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        if dest.exists() {
            let trash = self.root.join("tmp").join(format!("{}.replaced.{}", temp.key, std::process::id()));
            fs::rename(&dest, &trash).map_err(io_err(&dest))?;
            let _ = fs::remove_dir_all(&trash);
        }
        fs::rename(&temp.dir, &dest).map_err(io_err(&dest))?;
        fsync_dir(parent)?;
        Ok(())
    }

    pub fn save_last_run(
        &self,
        experiment: &str,
        variant: &str,
        stage: &str,
        last: &LastRun,
    ) -> Result<(), StoreError> {
        let path = self.last_run_path(experiment, variant, stage);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let bytes = serde_json::to_vec_pretty(last)
            .map_err(|e| StoreError::Corrupt { path: path.clone(), message: e.to_string() })?;
        write_atomic(&path, &bytes).map_err(io_err(&path))
    }

    pub fn last_run(&self, experiment: &str, variant: &str, stage: &str) -> Option<LastRun> {
        let bytes = fs::read(self.last_run_path(experiment, variant, stage)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn last_run_path(&self, experiment: &str, variant: &str, stage: &str) -> PathBuf {
        self.root.join("runs").join(slug(experiment)).join(slug(variant)).join(format!("{}.json", slug(stage)))
    }

    /// Every last-run pointer in the store (for `gc` without `--keep`).
    pub fn all_last_runs(&self) -> Vec<LastRun> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.join("runs")];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Some(l) = fs::read(&p).ok().and_then(|b| serde_json::from_slice::<LastRun>(&b).ok()) {
                    out.push(l);
                }
            }
        }
        out
    }

    /// Every published key with its size in bytes.
    pub fn objects(&self) -> Vec<(StageKey, u64)> {
        let mut out = Vec::new();
        for shard in fs::read_dir(self.root.join("objects")).into_iter().flatten().flatten() {
            for e in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                if let Some(key) = StageKey::parse(&e.file_name().to_string_lossy()) {
                    out.push((key, dir_size(&e.path())));
                }
            }
        }
        out.sort();
        out
    }

    /// Removes a published entry (rename first, so readers never see half of one).
    pub fn remove_object(&self, key: &StageKey, _lock: &KeyLock) -> Result<(), StoreError> {
        let dir = self.object_dir(key);
        let trash = self.root.join("tmp").join(format!("{key}.gc.{}", std::process::id()));
        fs::rename(&dir, &trash).map_err(io_err(&dir))?;
        fs::remove_dir_all(&trash).map_err(io_err(&trash))?;
        let _ = fs::remove_file(self.log_path(key));
        let _ = fs::remove_dir_all(self.resume_dir(key));
        // The key's job file and, after Slurm runs, its batch script, job record and event log.
        let job = self.job_path(key);
        for side in [job.clone(), job.with_extension("slurm.sh"), job.with_extension("slurm.json")] {
            let _ = fs::remove_file(side);
        }
        let _ = fs::remove_file(self.log_path(key).with_extension("events"));
        Ok(())
    }
}

/// A file-system-safe form of a name (variant names contain `=`, `,`, `/`).
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"=,._-+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.starts_with('.') {
        out.replace_range(0..1, "%2E");
    }
    out
}

fn list_outputs(out: &Path) -> Result<Vec<OutputFile>, StoreError> {
    let mut files = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io_err(&d))? {
            let e = e.map_err(io_err(&d))?;
            let p = e.path();
            let ft = e.file_type().map_err(io_err(&p))?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                files.push(p);
            }
        }
    }
    files.sort();
    use rayon::prelude::*;
    files
        .par_iter()
        .map(|p| {
            let bytes = fs::metadata(p).map_err(io_err(p))?.len();
            let blake3 = crate::filedigest::hash_file(p).map_err(io_err(p))?;
            let rel = p.strip_prefix(out).unwrap_or(p).to_string_lossy().into_owned();
            Ok(OutputFile { path: rel, bytes, blake3 })
        })
        .collect()
}

fn fsync_tree(dir: &Path) -> Result<(), StoreError> {
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let p = e.path();
        if e.file_type().map_err(io_err(&p))?.is_dir() {
            fsync_tree(&p)?;
        } else {
            File::open(&p).and_then(|f| f.sync_all()).map_err(io_err(&p))?;
        }
    }
    fsync_dir(dir)
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io_err(dir))
}

/// Writes a small file atomically (temp file, fsync, rename, fsync directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(parent) = path.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyInputs;

    fn key(n: u8) -> StageKey {
        KeyInputs {
            kind: format!("k{n}"),
            version: 1,
            params: serde_json::json!({}),
            upstream: vec![],
            external: vec![],
        }
        .key()
    }

    fn record(k: &StageKey) -> Record {
        Record {
            key: k.clone(),
            inputs: KeyInputs {
                kind: "k".into(),
                version: 1,
                params: serde_json::json!({}),
                upstream: vec![],
                external: vec![],
            },
            experiment: "e".into(),
            variant: "default".into(),
            stage: "s".into(),
            external_paths: Default::default(),
            started_unix: 0,
            seconds: 0.0,
            host: "h".into(),
            engine_version: "0".into(),
            outputs: vec![],
            summary: Default::default(),
        }
    }

    #[test]
    fn publish_is_all_or_nothing_and_lists_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = key(1);
        let lock = store.lock(&k).unwrap();
        let temp = store.new_temp(&k, &lock).unwrap();
        std::fs::write(temp.out_dir().join("a.txt"), b"abc").unwrap();
        assert!(!store.has(&k));
        store.publish(temp, record(&k), None, &lock).unwrap();
        assert!(store.has(&k));
        let r = store.record(&k).unwrap().unwrap();
        assert_eq!(r.outputs.len(), 1);
        assert_eq!(r.outputs[0].path, "a.txt");
        assert_eq!(r.outputs[0].bytes, 3);
        assert_eq!(std::fs::read(store.out_dir(&k).join("a.txt")).unwrap(), b"abc");
    }

    #[test]
    fn removing_an_entry_removes_its_log_job_and_slurm_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = key(4);
        let lock = store.lock(&k).unwrap();
        let temp = store.new_temp(&k, &lock).unwrap();
        std::fs::write(temp.out_dir().join("a.txt"), b"abc").unwrap();
        store.publish(temp, record(&k), None, &lock).unwrap();
        let job = store.job_path(&k);
        let side = [
            store.log_path(&k),
            store.log_path(&k).with_extension("events"),
            job.clone(),
            job.with_extension("slurm.sh"),
            job.with_extension("slurm.json"),
        ];
        for p in &side {
            std::fs::write(p, b"x").unwrap();
        }
        let other = store.job_path(&key(5));
        std::fs::write(&other, b"x").unwrap();
        store.remove_object(&k, &lock).unwrap();
        assert!(!store.has(&k));
        for p in &side {
            assert!(!p.exists(), "{} left behind", p.display());
        }
        assert!(other.exists(), "another key's job file was removed");
    }

    #[test]
    fn a_held_lock_blocks_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = key(2);
        let held = store.lock(&k).unwrap();
        assert!(store.try_lock(&k).unwrap().is_none());
        drop(held);
        assert!(store.try_lock(&k).unwrap().is_some());
    }

    #[test]
    fn stale_temps_are_cleaned_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = key(3);
        let lock = store.lock(&k).unwrap();
        let t = store.new_temp(&k, &lock).unwrap();
        let path = t.dir.clone();
        std::mem::forget(t);
        store.clean_stale_temps(&k, &lock);
        assert!(!path.exists());
    }

    #[test]
    fn slugs_are_safe_and_distinct() {
        assert_eq!(slug("lr=1e-4,epochs=10"), "lr=1e-4,epochs=10");
        assert_eq!(slug("big/iou=0.3"), "big%2Fiou=0.3");
        assert_eq!(slug(".."), "%2E.");
    }
}
