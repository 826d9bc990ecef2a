//! The single-node test cluster the Slurm tests run against (`tests/slurm/start.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{stderr, stdout};

/// `SLURM_CONF` of the test cluster, started once per test process. Where the cluster cannot
/// start (no root, no apt-get) it is `None` and the reason is printed, so a developer's machine
/// without Slurm still runs the rest of the suite, except under `CI=true`: there a test that
/// needs the cluster fails, so CI never passes without having checked the Slurm back-end.
pub fn cluster() -> Option<&'static Path> {
    static CONF: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let conf = CONF.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("slurm/start.sh");
        let out = Command::new("bash").arg(&script).output().expect("run tests/slurm/start.sh");
        match out.status.code() {
            Some(0) => {
                let text = stdout(&out);
                let conf = text.lines().rev().find_map(|l| l.strip_prefix("SLURM_CONF=")).expect("SLURM_CONF line");
                Ok(PathBuf::from(conf.trim()))
            }
            // start.sh: 3 = Slurm cannot be installed or started on this machine.
            Some(3) => Err(stderr(&out).trim().to_string()),
            _ => panic!("tests/slurm/start.sh failed:\n{}\n{}", stdout(&out), stderr(&out)),
        }
    });
    match conf {
        Ok(p) => Some(p.as_path()),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and the Slurm test cluster cannot start: {why}")
        }
        Err(why) => {
            eprintln!("skipping the Slurm test: {why}");
            None
        }
    }
}
