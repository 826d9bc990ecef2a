//! The worker side: `pipeline exec-stage --job FILE` runs one stage for one key and publishes
//! it atomically. Local runs start it as a child process; the Slurm executor as a batch job.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::context::{CANCELLED, Progress, StageContext};
use crate::error::StageError;
use crate::exec::events::{WorkerEvent, send_event};
use crate::exec::job::JobFile;
use crate::record::{Record, host_name, now_unix};
use crate::stage::Registry;
use crate::store::Store;

pub const EXIT_CANCELLED: u8 = 130;

/// Runs a job file; the exit code is 0 (published or already there), 1 (failed) or 130.
pub fn run_job_file(registry: &Registry, job_path: &Path) -> ExitCode {
    install_interrupt_handler();
    let job = match JobFile::read(job_path) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run_job(registry, &job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StageError::Cancelled) => {
            eprintln!("stage `{}` cancelled; nothing was published", job.stage);
            ExitCode::from(EXIT_CANCELLED)
        }
        Err(e) => {
            eprintln!("error: stage `{}` ({}) failed: {e}", job.stage, job.inputs.kind);
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        if CANCELLED.swap(true, Ordering::SeqCst) {
            // Second interrupt: stop now. The temporary entry is never published and is
            // removed by the next run that takes this key's lock.
            std::process::exit(EXIT_CANCELLED as i32);
        }
    });
}

pub fn run_job(registry: &Registry, job: &JobFile) -> Result<(), StageError> {
    let mut out = std::io::stdout();
    let stage = registry
        .get(&job.inputs.kind)
        .ok_or_else(|| StageError::msg(format!("this executable does not know stage kind `{}`", job.inputs.kind)))?;
    let store = Store::open(&job.cache_dir).map_err(StageError::domain)?;
    // What this stage reads and writes stays out of gc's reach while it runs, even when the
    // `pipeline run` that started it is gone (a cluster job outliving an interrupted run).
    let pinned = std::iter::once(&job.key).chain(job.ancestors.iter().map(|a| &a.key));
    let _pin =
        store.pin(pinned, &format!("stage `{}` ({})", job.stage, job.key.short())).map_err(StageError::domain)?;
    if !job.force && store.has(&job.key) {
        send_event(&mut out, &WorkerEvent::Cached);
        return Ok(());
    }
    let lock = match store.try_lock(&job.key).map_err(StageError::domain)? {
        Some(l) => l,
        None => {
            send_event(
                &mut out,
                &WorkerEvent::Waiting { message: "another run is computing this stage; waiting for it".into() },
            );
            tracing::info!("waiting for another process that holds the lock of {}", job.key);
            let l = store.lock(&job.key).map_err(StageError::domain)?;
            if store.has(&job.key) {
                send_event(&mut out, &WorkerEvent::Cached);
                return Ok(());
            }
            l
        }
    };
    store.clean_stale_temps(&job.key, &lock);
    let temp = store.new_temp(&job.key, &lock).map_err(StageError::domain)?;

    if job.threads > 0 {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(job.threads).build_global();
    }
    let ctx = StageContext::from_job(job, temp.out_dir(), store.resume_dir(&job.key), Progress::to_stdout())
        .with_memo_dir(store.stage_memo_dir(&job.inputs.kind));
    tracing::info!(stage = %job.stage, kind = %job.inputs.kind, key = %job.key, "running");
    let started_unix = now_unix();
    let start = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage.run(&job.params, &ctx)));
    let result = match result {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(StageError::msg(format!("internal error (panic): {what}")))
        }
    };
    if result.is_ok() && ctx.is_cancelled() {
        temp.discard();
        return Err(StageError::Cancelled);
    }
    if let Err(e) = result {
        temp.discard();
        return Err(e);
    }
    let seconds = start.elapsed().as_secs_f64();
    let record = Record {
        key: job.key.clone(),
        inputs: job.inputs.clone(),
        experiment: job.experiment.clone(),
        variant: job.variant.clone(),
        stage: job.stage.clone(),
        external_paths: job.external.iter().map(|e| (e.name.clone(), e.path.clone())).collect(),
        started_unix,
        seconds,
        host: host_name(),
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
        outputs: Vec::new(),
        summary: ctx.take_summary(),
    };
    tracing::info!(seconds, "publishing");
    if let Err(e) = store.publish(temp, record, own_log(job).as_deref(), &lock) {
        return Err(StageError::msg(format!("could not publish the output: {e}")));
    }
    let _ = std::fs::remove_dir_all(store.resume_dir(&job.key));
    send_event(&mut out, &WorkerEvent::Done { seconds });
    Ok(())
}

/// The log this worker writes: its stderr when that is a file (it stays the right file even if
/// a concurrent run moved the key's log aside meanwhile), else the job file's log path.
fn own_log(job: &JobFile) -> Option<std::path::PathBuf> {
    let stderr = std::path::PathBuf::from("/proc/self/fd/2");
    if std::fs::metadata(&stderr).is_ok_and(|m| m.is_file()) { Some(stderr) } else { job.log.clone() }
}
