//! What `gc` keeps and removes, and how big the cache really is.
//!
//! | kept                                                        | removed                              |
//! |-------------------------------------------------------------|--------------------------------------|
//! | entries whose key is in the keep set (the caller's choice)   | every other published entry          |
//! | entries, resume state and logs of keys a live [`Pin`] holds  | resume state (`work/<key>/`), logs and job files of keys neither kept nor pinned |
//! | anything of a key whose lock is held (a stage running now)   | stale temporaries (`tmp/`) of killed runs, pins of dead processes |
//! | `locks/` (removing a lock file would race with its users)   |                                      |
//!
//! gc holds the store's gc lock for its whole run, so no pin appears while it decides.
//!
//! [`Pin`]: super::Pin

use std::collections::{BTreeSet, HashSet};
use std::fs;

use super::{AREAS, Store, StoreError, dir_size};
use crate::key::StageKey;

/// Disk usage of one top-level directory of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaUsage {
    pub name: &'static str,
    pub bytes: u64,
}

/// Disk usage of the whole store, by top-level directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub areas: Vec<AreaUsage>,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.areas.iter().map(|a| a.bytes).sum()
    }
}

/// What gc removed (or, in a dry run, would remove).
#[derive(Debug, Clone)]
pub struct Removal {
    pub key: StageKey,
    pub bytes: u64,
    /// "experiment / variant / stage" of a published entry; what else it was otherwise
    /// ("resume state and logs", "stale temporary output").
    pub what: String,
    /// A published entry (as opposed to resume state, logs or temporaries).
    pub entry: bool,
}

#[derive(Debug, Clone)]
pub struct GcReport {
    pub dry_run: bool,
    pub removed: Vec<Removal>,
    /// Entries outside the keep set that stayed because a running process uses them.
    pub in_use: Vec<(StageKey, String)>,
    /// Entries kept because they are in the keep set, and their size.
    pub kept_entries: usize,
    pub kept_bytes: u64,
    /// Who holds the live pins.
    pub holders: Vec<String>,
    pub before: Usage,
    /// After the removals (`None` in a dry run).
    pub after: Option<Usage>,
}

impl Store {
    /// Disk usage of the store by top-level directory.
    pub fn usage(&self) -> Usage {
        Usage { areas: AREAS.iter().map(|&name| AreaUsage { name, bytes: dir_size(&self.root.join(name)) }).collect() }
    }

    /// Removes what neither `keep` nor a running process needs (see the module docs).
    pub fn gc(&self, keep: &HashSet<StageKey>, dry_run: bool) -> Result<GcReport, StoreError> {
        let _gc = self.gc_lock(true)?;
        let before = self.usage();
        let pinned = self.pinned(!dry_run);
        if let Some(path) = pinned.unreadable.first() {
            return Err(StoreError::Corrupt {
                path: path.clone(),
                message: "a running process holds this pin but its keys cannot be read; nothing was removed".into(),
            });
        }
        let mut report = GcReport {
            dry_run,
            removed: Vec::new(),
            in_use: Vec::new(),
            kept_entries: 0,
            kept_bytes: 0,
            holders: pinned.holders.clone(),
            before,
            after: None,
        };
        let published = self.objects();
        let published_keys: HashSet<&StageKey> = published.iter().map(|(k, _)| k).collect();
        for (key, size) in &published {
            if keep.contains(key) {
                report.kept_entries += 1;
                report.kept_bytes += size;
                continue;
            }
            if pinned.keys.contains(key) {
                report.in_use.push((key.clone(), "used by a running pipeline".into()));
                continue;
            }
            let Some(lock) = self.try_lock(key)? else {
                report.in_use.push((key.clone(), "a running stage holds its lock".into()));
                continue;
            };
            let what = self
                .record(key)
                .ok()
                .flatten()
                .map(|r| format!("{} / {} / {}", r.experiment, r.variant, r.stage))
                .unwrap_or_else(|| "?".into());
            let side: u64 =
                dir_size(&self.resume_dir(key)) + self.side_files(key).iter().map(|p| dir_size(p)).sum::<u64>();
            if !dry_run {
                self.remove_object(key, &lock)?;
            }
            report.removed.push(Removal { key: key.clone(), bytes: size + side, what, entry: true });
        }

        // Resume state, logs and job files of keys that were never published (killed, failed,
        // or abandoned attempts).
        for key in self.unpublished_keys(&published_keys) {
            if keep.contains(&key) || pinned.keys.contains(&key) {
                continue;
            }
            let Some(lock) = self.try_lock(&key)? else { continue };
            let work = self.resume_dir(&key);
            let bytes = dir_size(&work) + self.side_files(&key).iter().map(|p| dir_size(p)).sum::<u64>();
            let what =
                if work.exists() { "resume state and logs of an unfinished stage" } else { "logs and job files" };
            if !dry_run {
                self.remove_side_files(&key, &lock);
            }
            report.removed.push(Removal { key, bytes, what: what.into(), entry: false });
        }

        // Temporary outputs of killed runs (their key's lock is free).
        for e in fs::read_dir(self.root.join("tmp")).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(key) = name.split('.').next().and_then(StageKey::parse) else { continue };
            if pinned.keys.contains(&key) {
                continue;
            }
            let Some(_lock) = self.try_lock(&key)? else { continue };
            let bytes = dir_size(&e.path());
            if !dry_run {
                let _ = fs::remove_dir_all(e.path());
            }
            report.removed.push(Removal {
                key,
                bytes,
                what: "stale temporary output of a killed run".into(),
                entry: false,
            });
        }

        if !dry_run {
            report.after = Some(self.usage());
        }
        Ok(report)
    }

    /// Keys with resume state, logs or job files but no published entry.
    fn unpublished_keys(&self, published: &HashSet<&StageKey>) -> BTreeSet<StageKey> {
        let mut keys = BTreeSet::new();
        for area in ["work", "jobs", "logs"] {
            for e in fs::read_dir(self.root.join(area)).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let stem = name.split('.').next().unwrap_or_default();
                if let Some(key) = StageKey::parse(stem)
                    && !published.contains(&key)
                {
                    keys.insert(key);
                }
            }
        }
        keys
    }
}
