//! Replacing a view: a new generation directory of links is written and fsynced, then the
//! experiment's link is renamed onto it (one atomic step), then older generations go.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::{INDEX_FILE, INDEX_FORMAT, ResultsDir, VIEWS_DIR, ViewEntry, ViewError, ViewIndex, entry_path, io_err};
use crate::atomic::{fsync_dir, unique_suffix};
use crate::key::StageKey;
use crate::record::now_unix;
use crate::store::{Store, StoreError};

/// A stage the run finished (ran, or found in the cache).
#[derive(Debug, Clone)]
pub struct Finished {
    pub variant: String,
    pub stage: String,
    pub kind: String,
    pub key: StageKey,
    /// The kind's main files ([`crate::stage::StageDef::HIGHLIGHTS`]); those the entry has are shown.
    pub highlights: &'static [&'static str],
}

/// What a finished run tells the view.
#[derive(Debug, Clone)]
pub struct ViewUpdate<'a> {
    pub experiment: &'a str,
    pub file: &'a Path,
    /// Every (variant, stage) of the experiment as planned now, in plan order: a previous entry
    /// of a stage no longer planned leaves the view.
    pub planned: &'a [(String, String)],
    /// The variants this run planned.
    pub variants_run: &'a [String],
    /// Whether the run chose some variants (`--variant`): then the others keep their entries;
    /// otherwise a variant not planned has left the experiment, and its entries the view.
    pub other_variants_stay: bool,
    /// One directory per variant (the experiment has a sweep).
    pub by_variant: bool,
    pub finished: Vec<Finished>,
}

/// Replaces the experiment's view with the previous one plus what `update` finished, and makes
/// it a root of `store`. Waits while a `gc` of the store runs, and for another run replacing
/// the same view.
pub fn publish(results: &ResultsDir, store: &Store, update: ViewUpdate) -> Result<ViewIndex, ViewError> {
    let _no_gc = store.hold_off_gc().map_err(from_store)?;
    let gens = results.generations_dir(update.experiment);
    fs::create_dir_all(&gens).map_err(io_err(&gens))?;
    let _lock = lock(&gens)?;
    let link = results.view_path(update.experiment);
    check_link(&link)?;
    let previous = match super::read_index(&link.join(INDEX_FILE)) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("{e}; the view is rebuilt from this run alone");
            None
        }
    };
    let now = now_unix();
    let run = run_id();
    let mut entries: Vec<ViewEntry> = Vec::new();
    let mut done: HashSet<(String, String)> = HashSet::new();
    for f in &update.finished {
        // Only what exists at this moment (gc is held off): a view never points at a removed entry.
        let Ok(Some(record)) = store.record(&f.key) else { continue };
        let out = store.out_dir(&f.key);
        entries.push(ViewEntry {
            variant: f.variant.clone(),
            stage: f.stage.clone(),
            kind: f.kind.clone(),
            key: f.key.clone(),
            path: entry_path(update.by_variant, &f.variant, &f.stage),
            made_unix: record.started_unix + record.seconds.round() as u64,
            run_unix: now,
            run: run.clone(),
            highlights: f.highlights.iter().filter(|h| out.join(h).exists()).map(|h| h.to_string()).collect(),
        });
        done.insert((f.variant.clone(), f.stage.clone()));
    }
    let planned: HashMap<&(String, String), usize> = update.planned.iter().enumerate().map(|(i, p)| (p, i)).collect();
    if let Some(prev) = previous.filter(|p| p.store == store.root()) {
        for e in prev.entries {
            let id = (e.variant.clone(), e.stage.clone());
            let still_planned =
                planned.contains_key(&id) || (update.other_variants_stay && !update.variants_run.contains(&e.variant));
            if done.contains(&id) || !still_planned || !store.has(&e.key) {
                continue;
            }
            let path = entry_path(update.by_variant, &e.variant, &e.stage);
            entries.push(ViewEntry { path, ..e });
        }
    }
    entries.sort_by_key(|e| planned.get(&(e.variant.clone(), e.stage.clone())).copied().unwrap_or(usize::MAX));
    let index = ViewIndex {
        format: INDEX_FORMAT,
        experiment: update.experiment.to_string(),
        file: std::path::absolute(update.file).unwrap_or_else(|_| update.file.to_path_buf()),
        store: store.root().to_path_buf(),
        updated_unix: now,
        run,
        by_variant: update.by_variant,
        keys: keys_of(&entries),
        entries,
    };
    // Registered before the view appears, so no gc ever sees the view without its root.
    store.register_root(&root_id(&link), &link.join(INDEX_FILE)).map_err(from_store)?;
    replace(results, &gens, &link, store, &index)?;
    Ok(index)
}

/// Drops every link to `removed` from every view rooted in `store`. `gc --ignore-results`
/// calls it (holding the store's gc lock) before it removes those entries.
pub fn forget(store: &Store, removed: &HashSet<StageKey>) -> Result<(), StoreError> {
    for root in store.roots(false)? {
        if !root.keys.iter().any(|k| removed.contains(k)) {
            continue;
        }
        let to_store = |e: ViewError| StoreError::Corrupt { path: root.index.clone(), message: e.to_string() };
        let link = root.index.parent().map(Path::to_path_buf).unwrap_or_default();
        let Some(results) = link.parent() else { continue };
        let results = ResultsDir { root: results.to_path_buf() };
        let gens = results.root.join(VIEWS_DIR).join(link.file_name().unwrap_or_default());
        let _lock = lock(&gens).map_err(to_store)?;
        let Some(mut index) = super::read_index(&root.index).map_err(to_store)? else { continue };
        index.entries.retain(|e| !removed.contains(&e.key));
        index.keys = keys_of(&index.entries);
        replace(&results, &gens, &link, store, &index).map_err(to_store)?;
    }
    Ok(())
}

fn run_id() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("{ms}.{}", unique_suffix())
}

fn keys_of(entries: &[ViewEntry]) -> Vec<StageKey> {
    let mut keys: Vec<StageKey> = entries.iter().map(|e| e.key.clone()).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The root id of a view: its link's path, hashed (a results directory per checkout, several
/// experiments each).
fn root_id(link: &Path) -> String {
    let hash = blake3::hash(link.as_os_str().as_encoded_bytes());
    format!("view-{}", &hash.to_hex()[..32])
}

fn from_store(e: StoreError) -> ViewError {
    match e {
        StoreError::Io { path, source } => ViewError::Io { path, source },
        StoreError::Corrupt { path, message } => ViewError::Corrupt { path, message },
    }
}

fn lock(gens: &Path) -> Result<File, ViewError> {
    let path = gens.join("lock");
    let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
    file.lock().map_err(io_err(&path))?;
    Ok(file)
}

/// The experiment's link is absent or one this module made.
fn check_link(link: &Path) -> Result<(), ViewError> {
    match fs::symlink_metadata(link) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ViewError::Io { path: link.to_path_buf(), source: e }),
        Ok(m) if m.file_type().is_symlink() && fs::read_link(link).is_ok_and(|t| t.starts_with(VIEWS_DIR)) => Ok(()),
        Ok(_) => Err(ViewError::NotAView { path: link.to_path_buf() }),
    }
}

/// Writes `index` as a new generation and swaps the link onto it; older generations go.
fn replace(results: &ResultsDir, gens: &Path, link: &Path, store: &Store, index: &ViewIndex) -> Result<(), ViewError> {
    check_link(link)?;
    let name = format!("g.{}", unique_suffix());
    let dir = gens.join(&name);
    fs::create_dir(&dir).map_err(io_err(&dir))?;
    let written = write_generation(&dir, store, index);
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&dir);
        return Err(e);
    }
    let target = dir.strip_prefix(&results.root).unwrap_or(&dir).to_path_buf();
    let tmp = gens.join(format!("link.{}", unique_suffix()));
    symlink(&target, &tmp).map_err(io_err(&tmp))?;
    if let Err(e) = fs::rename(&tmp, link) {
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_dir_all(&dir);
        return Err(ViewError::Io { path: link.to_path_buf(), source: e });
    }
    fsync_dir(&results.root).map_err(io_err(&results.root))?;
    // Older generations and links of interrupted replacements.
    for e in fs::read_dir(gens).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("g.") && n != name {
            let _ = fs::remove_dir_all(e.path());
        } else if n.starts_with("link.") {
            let _ = fs::remove_file(e.path());
        }
    }
    Ok(())
}

fn write_generation(dir: &Path, store: &Store, index: &ViewIndex) -> Result<(), ViewError> {
    let mut dirs: Vec<PathBuf> = vec![dir.to_path_buf()];
    for e in &index.entries {
        let p = dir.join(&e.path);
        if let Some(parent) = p.parent()
            && !dirs.iter().any(|d| d == parent)
        {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
            dirs.push(parent.to_path_buf());
        }
        symlink(store.out_dir(&e.key), &p).map_err(io_err(&p))?;
    }
    let path = dir.join(INDEX_FILE);
    let bytes = serde_json::to_vec_pretty(index)
        .map_err(|e| ViewError::Corrupt { path: path.clone(), message: e.to_string() })?;
    let file = File::create(&path).map_err(io_err(&path))?;
    std::io::Write::write_all(&mut &file, &bytes).map_err(io_err(&path))?;
    file.sync_all().map_err(io_err(&path))?;
    for d in dirs.iter().rev() {
        fsync_dir(d).map_err(io_err(d))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::test_key as key;
    use crate::record::Record;

    fn publish_entry(store: &Store, k: &StageKey, file: &str) {
        let lock = store.lock(k).unwrap();
        let temp = store.new_temp(k, &lock).unwrap();
        fs::write(temp.out_dir().join(file), b"x").unwrap();
        let record = Record { started_unix: 100, seconds: 2.0, ..crate::record::test_record(k) };
        store.publish(temp, record, None, &lock).unwrap();
    }

    fn finished(stage: &str, k: &StageKey) -> Finished {
        Finished {
            variant: "default".into(),
            stage: stage.into(),
            kind: "k".into(),
            key: k.clone(),
            highlights: &["a.txt", "absent.txt"],
        }
    }

    #[test]
    fn a_view_keeps_what_did_not_finish_and_drops_what_left_the_experiment() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let results = ResultsDir::create(&dir.path().join("results")).unwrap();
        let (a, b, c, a2) = (key(1), key(2), key(3), key(4));
        for k in [&a, &b, &c, &a2] {
            publish_entry(&store, k, "a.txt");
        }
        let planned: Vec<(String, String)> =
            ["a", "b", "c"].iter().map(|s| ("default".to_string(), s.to_string())).collect();
        let variants = vec!["default".to_string()];
        let update = |finished: Vec<Finished>, planned: &[(String, String)]| {
            publish(
                &results,
                &store,
                ViewUpdate {
                    experiment: "exp",
                    file: Path::new("exp.toml"),
                    planned,
                    variants_run: &variants,
                    other_variants_stay: false,
                    by_variant: false,
                    finished,
                },
            )
            .unwrap()
        };
        let first = update(vec![finished("a", &a), finished("b", &b), finished("c", &c)], &planned);
        assert_eq!(first.keys.len(), 3);
        assert_eq!(first.entries[0].highlights, ["a.txt"]);
        assert_eq!(first.entries[0].made_unix, 102);
        let view = results.view_path("exp");
        assert_eq!(fs::read(view.join("a/a.txt")).unwrap(), b"x");

        // `a` reran with a new key; `b` and `c` did not finish; `c` left the experiment.
        let fewer = &planned[..2];
        let second = update(vec![finished("a", &a2)], fewer);
        let stages: Vec<(&str, &StageKey)> = second.entries.iter().map(|e| (e.stage.as_str(), &e.key)).collect();
        assert_eq!(stages, [("a", &a2), ("b", &b)]);
        assert!(second.is_latest(&second.entries[0]) && !second.is_latest(&second.entries[1]));
        assert_eq!(second.entries[1].run, first.run);
        assert_eq!(fs::read_link(view.join("a")).unwrap(), store.out_dir(&a2));
        assert!(!view.join("c").exists());
        // One generation left, and the view is a root of the store.
        let gens: Vec<_> = fs::read_dir(results.generations_dir("exp")).unwrap().flatten().collect();
        assert_eq!(gens.len(), 2, "the current generation and the lock");
        let roots = store.roots(false).unwrap();
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].keys, second.keys);

        // gc --ignore-results: the links go before the entries.
        forget(&store, &[b.clone()].into()).unwrap();
        let after = results.read("exp").unwrap().unwrap();
        assert_eq!(after.entries.len(), 1);
        assert!(!view.join("b").exists() && view.join("a").exists());
    }

    #[test]
    fn a_results_dir_that_is_a_file_or_a_foreign_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("results");
        fs::write(&file, b"").unwrap();
        let e = ResultsDir::create(&file).unwrap_err();
        assert!(e.to_string().contains("is a file"), "{e}");
        assert!(ResultsDir::existing(&file).is_err());

        let store = Store::open(&dir.path().join("cache")).unwrap();
        let results = ResultsDir::create(&dir.path().join("r")).unwrap();
        fs::create_dir_all(results.view_path("exp")).unwrap();
        let e = publish(
            &results,
            &store,
            ViewUpdate {
                experiment: "exp",
                file: Path::new("exp.toml"),
                planned: &[],
                variants_run: &[],
                other_variants_stay: false,
                by_variant: false,
                finished: vec![],
            },
        )
        .unwrap_err();
        assert!(matches!(e, ViewError::NotAView { .. }), "{e}");
    }
}
