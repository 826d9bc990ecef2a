//! The content-addressed store (default `./cache`):
//!
//! ```text
//! objects/ab/<key>/        a published entry: out/ (the stage's files), record.json, log.txt
//! tmp/<key>.<pid>.<n>/     entries being written; never read, removed when stale
//! work/<key>/              state an interrupted stage resumes from (e.g. epoch checkpoints)
//! locks/<key>.lock         per-key advisory locks (the kernel releases them when a process dies)
//! locks/gc.lock            held by `gc` while it removes; taken shared to create a pin
//! pins/<pid>.<n>.json      the keys a running process uses or produces ([`Pin`]); gc keeps them
//! logs/<key>.log           the log of the latest attempt; `<key>.previous.log` the one before
//! runs/<exp>/<variant>/<stage>.json     the last key of each named stage (for status/explain)
//! runs/<exp>/<variant>/<stage>.attempt  its latest attempt that did not publish (kept by gc)
//! jobs/<key>.json          job files handed to workers (local processes or cluster jobs)
//! memo/files.json          digests of external files by (device, inode, size, mtime)
//! memo/stages/<kind>/      facts a stage kind memoises by content (e.g. "this image decodes")
//! ```
//!
//! Every file in `jobs/` and `logs/` whose name starts with `<key>.` belongs to that key: the
//! back-ends name their own side files that way (`jobs/<key>.slurm.sh`) and the store removes
//! them with the key without knowing what they are.
//!
//! Publication is atomic: a stage writes into `tmp/`, every file and directory is fsynced, the
//! directory is renamed into `objects/`, and `objects/ab/` is fsynced. A killed run leaves at most
//! a stale `tmp/` directory, which the next holder of the key's lock removes.

mod gc;
mod lock;
mod pin;
mod runs;

use std::fs;
use std::path::{Path, PathBuf};

pub use self::gc::{AreaUsage, GcReport, Removal, Usage};
pub use self::lock::KeyLock;
pub use self::pin::Pin;
use crate::atomic::{fsync_dir, fsync_tree, unique_suffix};
use crate::key::StageKey;
use crate::record::{OutputFile, Record};

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

/// The store's top-level directories.
const AREAS: [&str; 9] = ["objects", "tmp", "work", "locks", "pins", "logs", "runs", "jobs", "memo"];

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
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

impl Store {
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        for sub in AREAS {
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

    /// The log of the attempt before the latest (see [`Store::start_log`]).
    pub fn previous_log_path(&self, key: &StageKey) -> PathBuf {
        self.root.join("logs").join(format!("{key}.previous.log"))
    }

    /// The log path of a new attempt at `key`: the latest attempt's log, if any, becomes the
    /// previous one, so a rerun after a crash or a kill keeps the log that says what happened.
    pub fn start_log(&self, key: &StageKey) -> PathBuf {
        let log = self.log_path(key);
        if log.is_file() {
            let _ = fs::rename(&log, self.previous_log_path(key));
        }
        log
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
        let dir = self.root.join("tmp").join(format!("{key}.{}", unique_suffix()));
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
        fsync_tree(&temp.dir).map_err(io_err(&temp.dir))?;

        let dest = self.object_dir(&temp.key);
        let parent = dest.parent().expect("object dirs have a parent");
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        if dest.exists() {
            let trash = self.root.join("tmp").join(format!("{}.replaced.{}", temp.key, unique_suffix()));
            fs::rename(&dest, &trash).map_err(io_err(&dest))?;
            let _ = fs::remove_dir_all(&trash);
        }
        fs::rename(&temp.dir, &dest).map_err(io_err(&dest))?;
        fsync_dir(parent).map_err(io_err(parent))?;
        Ok(())
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

    /// Removes a published entry (rename first, so readers never see half of one) with
    /// everything else the store keeps for its key: resume state, logs, job files and the
    /// back-ends' side files.
    pub fn remove_object(&self, key: &StageKey, lock: &KeyLock) -> Result<(), StoreError> {
        let dir = self.object_dir(key);
        let trash = self.root.join("tmp").join(format!("{key}.gc.{}", unique_suffix()));
        fs::rename(&dir, &trash).map_err(io_err(&dir))?;
        fs::remove_dir_all(&trash).map_err(io_err(&trash))?;
        self.remove_side_files(key, lock);
        Ok(())
    }

    /// Removes what the store keeps for a key besides its entry: `work/<key>/` and every
    /// `jobs/<key>.*` and `logs/<key>.*`. Returns the bytes freed.
    pub fn remove_side_files(&self, key: &StageKey, _lock: &KeyLock) -> u64 {
        let mut freed = 0;
        let work = self.resume_dir(key);
        if work.exists() {
            freed += dir_size(&work);
            let _ = fs::remove_dir_all(&work);
        }
        for path in self.side_files(key) {
            freed += fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            let _ = fs::remove_file(path);
        }
        freed
    }

    /// The files in `jobs/` and `logs/` that belong to `key` (named `<key>.…`).
    pub fn side_files(&self, key: &StageKey) -> Vec<PathBuf> {
        let prefix = format!("{key}.");
        let mut out = Vec::new();
        for area in ["jobs", "logs"] {
            for e in fs::read_dir(self.root.join(area)).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) && e.file_type().is_ok_and(|t| t.is_file()) {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
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

/// The space `path` takes on disk (allocated blocks, as `du` counts them), files and
/// directories below it included.
pub fn dir_size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    let mut total = meta.blocks() * 512;
    if !meta.is_dir() {
        return total;
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = e.metadata() else { continue };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::key::KeyInputs;
    use crate::record::LastRun;

    fn key(n: u8) -> StageKey {
        KeyInputs {
            kind: format!("k{n}"),
            version: 1,
            params: serde_json::json!({}),
            upstream: vec![],
            external: vec![],
            names: None,
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
                names: None,
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

    fn publish(store: &Store, k: &StageKey) {
        let lock = store.lock(k).unwrap();
        let temp = store.new_temp(k, &lock).unwrap();
        std::fs::write(temp.out_dir().join("a.txt"), b"abc").unwrap();
        store.publish(temp, record(k), None, &lock).unwrap();
    }

    #[test]
    fn removing_an_entry_removes_every_file_named_after_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = key(4);
        publish(&store, &k);
        let job = store.job_path(&k);
        // The store does not know what back-ends name their files; the `<key>.` prefix says whose they are.
        let side = [
            store.log_path(&k),
            store.previous_log_path(&k),
            store.log_path(&k).with_extension("events"),
            job.clone(),
            job.with_extension("pbs.sh"),
            job.with_extension("slurm.json"),
        ];
        for p in &side {
            std::fs::write(p, b"x").unwrap();
        }
        std::fs::create_dir_all(store.resume_dir(&k)).unwrap();
        let other = store.job_path(&key(5));
        std::fs::write(&other, b"x").unwrap();
        let lock = store.lock(&k).unwrap();
        store.remove_object(&k, &lock).unwrap();
        assert!(!store.has(&k));
        for p in &side {
            assert!(!p.exists(), "{} left behind", p.display());
        }
        assert!(!store.resume_dir(&k).exists());
        assert!(other.exists(), "another key's job file was removed");
    }

    #[test]
    fn a_new_attempt_keeps_the_previous_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = key(6);
        std::fs::write(store.start_log(&k), b"attempt 1").unwrap();
        std::fs::write(store.start_log(&k), b"attempt 2").unwrap();
        assert_eq!(std::fs::read(store.previous_log_path(&k)).unwrap(), b"attempt 1");
        assert_eq!(std::fs::read(store.log_path(&k)).unwrap(), b"attempt 2");
    }

    #[test]
    fn gc_keeps_the_keep_set_and_pinned_keys_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (kept, pinned, dropped, running) = (key(10), key(11), key(12), key(13));
        for k in [&kept, &pinned, &dropped, &running] {
            publish(&store, k);
        }
        // Resume state of an attempt nobody keeps, and of one a pin holds.
        let (abandoned, resuming) = (key(14), key(15));
        for k in [&abandoned, &resuming] {
            std::fs::create_dir_all(store.resume_dir(k)).unwrap();
            std::fs::write(store.resume_dir(k).join("last.safetensors"), vec![0u8; 10_000]).unwrap();
            std::fs::write(store.log_path(k), b"log").unwrap();
        }
        let pin = store.pin([&pinned, &resuming], "test run").unwrap();
        let held = store.lock(&running).unwrap();
        let keep: HashSet<StageKey> = [kept.clone()].into();

        let dry = store.gc(&keep, true).unwrap();
        let would: HashSet<&StageKey> = dry.removed.iter().map(|r| &r.key).collect();
        assert_eq!(would, [&dropped, &abandoned].into());
        assert!(store.has(&dropped) && store.resume_dir(&abandoned).exists(), "a dry run removes nothing");

        let report = store.gc(&keep, false).unwrap();
        assert_eq!(report.removed.len(), 2);
        assert!(!store.has(&dropped));
        assert!(!store.resume_dir(&abandoned).exists() && !store.log_path(&abandoned).exists());
        assert!(store.has(&kept) && store.has(&pinned) && store.has(&running));
        assert!(store.resume_dir(&resuming).exists());
        let in_use: HashSet<&StageKey> = report.in_use.iter().map(|(k, _)| k).collect();
        assert_eq!(in_use, [&pinned, &running].into());
        assert_eq!(report.holders.len(), 1);
        assert!(report.holders[0].starts_with("test run (pid "), "{:?}", report.holders);
        let after = report.after.unwrap();
        assert!(after.total() < report.before.total());
        assert!(after.areas.iter().any(|a| a.name == "objects" && a.bytes > 0));

        // Released pins and locks protect nothing.
        drop(pin);
        drop(held);
        let report = store.gc(&keep, false).unwrap();
        assert_eq!(report.removed.iter().filter(|r| r.entry).count(), 2);
        assert!(!store.resume_dir(&resuming).exists());
        assert!(store.has(&kept));
        assert_eq!(std::fs::read_dir(dir.path().join("pins")).unwrap().count(), 0);
    }

    #[test]
    fn a_dead_processs_pin_is_ignored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = key(20);
        publish(&store, &k);
        // A pin file nobody holds a lock on: what a killed process leaves.
        let stale = dir.path().join("pins").join("1.0.json");
        let keys = vec![k.clone()];
        std::fs::write(
            &stale,
            serde_json::to_vec(&serde_json::json!({"holder": "x", "pid": 1, "host": "h", "keys": keys})).unwrap(),
        )
        .unwrap();
        let report = store.gc(&HashSet::new(), false).unwrap();
        assert_eq!(report.removed.len(), 1);
        assert!(!stale.exists());
    }

    #[test]
    fn latest_keys_are_the_last_runs_and_unfinished_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (done, attempt, superseded) = (key(30), key(31), key(32));
        let last = |k: &StageKey| LastRun {
            key: k.clone(),
            inputs: record(k).inputs,
            external_paths: Default::default(),
            recorded_unix: 0,
        };
        store.save_last_run("e", "default", "a", &last(&done)).unwrap();
        store.save_attempt("e", "default", "b", &superseded).unwrap();
        store.save_attempt("e", "default", "b", &attempt).unwrap();
        assert_eq!(store.latest_keys(), [done.clone(), attempt.clone()].into());
        // A published attempt is no unfinished one any more.
        store.save_last_run("e", "default", "b", &last(&attempt)).unwrap();
        assert_eq!(store.latest_keys(), [done, attempt].into());
        assert!(!dir.path().join("runs/e/default/b.attempt").exists());
    }

    #[test]
    fn an_unreadable_last_run_is_an_error_not_a_panic_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.last_run("e", "default", "a").unwrap().is_none());
        let path = dir.path().join("runs/e/default/a.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, br#"{"key": "0123", "inputs""#).unwrap();
        let e = store.last_run("e", "default", "a").unwrap_err();
        assert!(e.to_string().contains("a.json"), "{e}");
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
