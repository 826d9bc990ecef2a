//! Fault injection for the tests of the train stage's checkpoints: a kill, a full disk or
//! diverged weights at a named point of one epoch, chosen by the environment variable
//! [`ENV`] = `POINT@EPOCH` (kill) or `POINT@EPOCH:ACTION`, e.g. `optimizer@2` or
//! `state@1:enospc`. Unset (always, outside the tests), a point costs one comparison.
//!
//! The points, in the order a checkpoint is written (see `checkpoint.rs`): `weights`,
//! `optimizer`, `best`, `state` (each after its file is written), `synced` (files and directory
//! fsynced), `renamed` (committed), `cleaned` (older checkpoints removed); and `trained` (the
//! epoch's last step is done, before validation).

use std::sync::OnceLock;

pub const ENV: &str = "PIPELINE_TEST_FAULT";

/// What happens at a point that matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL to this process: no destructor, no flush, as the OOM killer or `scancel -9`.
    Kill,
    /// The write fails with ENOSPC, as on a full disk.
    Enospc,
    /// The weights become NaN (the caller poisons them).
    Nan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fault {
    point: String,
    epoch: u32,
    action: Action,
}

fn parse(spec: &str) -> Option<Fault> {
    let (point, rest) = spec.split_once('@')?;
    let (epoch, action) = match rest.split_once(':') {
        Some((e, a)) => (e, a),
        None => (rest, "kill"),
    };
    let action = match action {
        "kill" => Action::Kill,
        "enospc" => Action::Enospc,
        "nan" => Action::Nan,
        _ => return None,
    };
    Some(Fault { point: point.to_string(), epoch: epoch.parse().ok()?, action })
}

fn configured() -> Option<&'static Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    FAULT
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let fault = parse(&spec);
            if fault.is_none() {
                tracing::warn!("{ENV}={spec}: not POINT@EPOCH[:kill|enospc|nan]; ignored");
            }
            fault
        })
        .as_ref()
}

/// The action configured for `point` of `epoch` (1-based), if any.
pub fn action_at(point: &str, epoch: u32) -> Option<Action> {
    configured().filter(|f| f.point == point && f.epoch == epoch).map(|f| f.action)
}

/// A write point: kills the process, or fails like a full disk, when so configured.
pub fn at(point: &str, epoch: u32) -> std::io::Result<()> {
    match action_at(point, epoch) {
        Some(Action::Kill) => {
            tracing::warn!("{ENV}: killing this process at `{point}` of epoch {epoch}");
            // SAFETY: sending a signal to our own process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            unreachable!("SIGKILL returned");
        }
        Some(Action::Enospc) => Err(std::io::Error::from_raw_os_error(libc::ENOSPC)),
        Some(Action::Nan) | None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(parse("state@2"), Some(Fault { point: "state".into(), epoch: 2, action: Action::Kill }));
        assert_eq!(parse("best@1:enospc").unwrap().action, Action::Enospc);
        assert_eq!(parse("trained@3:nan").unwrap().action, Action::Nan);
        assert_eq!(parse("state"), None);
        assert_eq!(parse("state@x"), None);
        assert_eq!(parse("state@1:explode"), None);
    }
}
