//! Queued jobs run the executable as it was when they were submitted. A job starts minutes or
//! hours after `sbatch`; if it ran `target/release/pipeline` as found then, a rebuild in
//! between would publish the new code's output under a key the old code computed. So each run
//! copies the worker executables into the cache, content-addressed:
//! `jobs/bin/<name>-<blake3 prefix>`, one copy per build (tens of MB), reused by every run of
//! that build. Copies unused for [`KEEP_UNUSED`] are removed by later runs.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long a copy nobody submitted a job with stays in the cache.
pub const KEEP_UNUSED: Duration = Duration::from_secs(14 * 24 * 3600);

#[derive(Debug, Default)]
pub struct Snapshots {
    /// Executable → its copy, for this run.
    copies: HashMap<PathBuf, PathBuf>,
}

impl Snapshots {
    /// The copy of `exe` under `dir`, made now if this build has none yet.
    pub fn of(&mut self, exe: &Path, dir: &Path) -> Result<PathBuf, String> {
        if let Some(copy) = self.copies.get(exe) {
            return Ok(copy.clone());
        }
        let copy =
            snapshot(exe, dir).map_err(|e| format!("cannot copy {} into {}: {e}", exe.display(), dir.display()))?;
        if self.copies.is_empty() {
            prune(dir, &copy);
        }
        self.copies.insert(exe.to_path_buf(), copy.clone());
        Ok(copy)
    }
}

fn snapshot(exe: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let digest = crate::filedigest::hash_file(exe)?;
    let name = exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "worker".into());
    let copy = dir.join(format!("{name}-{}", &digest[..16]));
    if copy.is_file() {
        // Marks it as in use for pruning.
        let _ = fs::File::options().write(true).open(&copy).and_then(|f| f.set_modified(SystemTime::now()));
        return Ok(copy);
    }
    fs::create_dir_all(dir)?;
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut out = fs::File::create(&temp)?;
        out.write_all(&fs::read(exe)?)?;
        out.set_permissions(fs::Permissions::from_mode(0o755))?;
        out.sync_all()?;
        fs::rename(&temp, &copy)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map(|()| copy)
}

/// Removes copies not used for `KEEP_UNUSED` (best effort; a job queued longer than that would
/// fail to start and be resubmitted by the next run).
fn prune(dir: &Path, keep: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let unused_for = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if path != keep && unused_for.is_some_and(|d| d > KEEP_UNUSED) {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_once_per_content_and_survive_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("pipeline");
        fs::write(&exe, b"build 1").unwrap();
        let bin = dir.path().join("bin");
        let first = Snapshots::default().of(&exe, &bin).unwrap();
        assert_eq!(Snapshots::default().of(&exe, &bin).unwrap(), first);
        assert_eq!(fs::metadata(&first).unwrap().permissions().mode() & 0o777, 0o755);
        fs::write(&exe, b"build 2").unwrap();
        let second = Snapshots::default().of(&exe, &bin).unwrap();
        assert_ne!(second, first);
        assert_eq!(fs::read(&first).unwrap(), b"build 1");
    }
}
