//! The Slurm test cluster itself: its own ports (a real Slurm on the machine keeps its own), and
//! `tests/slurm/stop.sh` (which bin/test runs when the tests end) stops all three daemons.
//! Running this stops the test cluster; the next Slurm test starts it again.

mod common;

use std::path::Path;
use std::process::Command;

use common::slurm::cluster;
use common::*;

fn pid(file: &Path) -> u32 {
    std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).trim().parse().unwrap()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn the_test_cluster_has_ports_of_its_own_and_stop_sh_stops_every_daemon() {
    let Some(conf) = cluster() else { return };
    let text = std::fs::read_to_string(conf).unwrap();
    let port = |key: &str| -> u16 {
        let line = text.lines().find(|l| l.starts_with(&format!("{key}="))).unwrap_or_else(|| panic!("no {key}"));
        line[key.len() + 1..].trim().parse().unwrap()
    };
    assert!(![6817, 6818].contains(&port("SlurmctldPort")), "slurmctld on Slurm's default port:\n{text}");
    assert!(![6817, 6818].contains(&port("SlurmdPort")), "slurmd on Slurm's default port:\n{text}");
    assert!(text.contains("AuthInfo=socket="), "munge must use a private socket:\n{text}");

    let dir = conf.parent().unwrap();
    let pids = [dir.join("slurmd.pid"), dir.join("slurmctld.pid"), dir.join("munge/munged.pid")].map(|f| pid(&f));
    assert!(pids.iter().all(|&p| alive(p)), "{pids:?}");
    let stop = Path::new(env!("CARGO_MANIFEST_DIR")).join("slurm/stop.sh");
    let out = Command::new("bash").arg(&stop).env("PIPELINE_SLURM_DIR", dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the daemons to exit", 10, || pids.iter().all(|&p| !alive(p)));
}
