//! The engine's commands, one file each: `run`, `status`, `explain`, `dag`, `gc`, `stages`, and
//! the hidden `exec-stage` used by workers. A product binary flattens [`EngineCommand`] into its
//! own command enum and passes its [`Registry`].

mod dag;
mod explain;
mod gc;
mod run;
mod stages;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use self::dag::{DagArgs, DagFormat};
pub use self::explain::ExplainArgs;
pub use self::gc::GcArgs;
pub use self::run::RunArgs;
pub use self::stages::StagesArgs;
pub use self::status::StatusArgs;
use crate::exec;
use crate::spec::SpecError;
use crate::stage::Registry;

/// Exit codes: 0 success, 1 a stage failed, 2 bad input (experiment, arguments), 130 interrupted.
pub const EXIT_STAGE_FAILED: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Args, Debug, Clone)]
pub struct CacheArgs {
    /// Cache directory (content-addressed store of stage outputs).
    #[arg(long, env = "PIPELINE_CACHE", default_value = "cache", value_name = "DIR")]
    pub cache_dir: PathBuf,
}

#[derive(Subcommand, Debug, Clone)]
pub enum EngineCommand {
    /// Run an experiment; only stages whose inputs changed run again.
    ///
    /// Example: pipeline run experiments/quickstart.toml --jobs 2
    Run(RunArgs),
    /// Say what `run` would do and why, without running anything.
    ///
    /// Example: pipeline status experiments/quickstart.toml
    Status(StatusArgs),
    /// Field-by-field difference of a stage's key inputs now against its last recorded run.
    ///
    /// Example: pipeline explain experiments/quickstart.toml nms
    Explain(ExplainArgs),
    /// Print the stage graph (text, Graphviz dot or Mermaid).
    ///
    /// Example: pipeline dag experiments/baseline.toml --format dot | dot -Tpng > dag.png
    Dag(DagArgs),
    /// Remove cache entries no experiment reaches any more; never what a running pipeline uses.
    ///
    /// Without --keep, keeps the latest output and the latest unfinished attempt of every stage
    /// of every experiment ever run. Entries, resume state and logs that a running `pipeline
    /// run` or stage uses are kept whatever --keep says. Prints the cache's size by directory.
    /// Example: pipeline gc --keep experiments/baseline.toml --dry-run
    Gc(GcArgs),
    /// List stage kinds with their parameters, types, defaults and documentation.
    ///
    /// Example: pipeline stages train
    Stages(StagesArgs),
    /// Run one stage from a job file (used by `run` and by cluster jobs).
    #[command(hide = true)]
    ExecStage {
        #[arg(long)]
        job: PathBuf,
    },
}

/// Logging to stderr, filtered by `PIPELINE_LOG` (e.g. `PIPELINE_LOG=debug`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIPELINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .try_init();
}

/// Runs an engine command and maps every error to a message and an exit code.
pub fn execute(cmd: EngineCommand, registry: &Registry) -> ExitCode {
    // The engine's warnings (an unsaved digest memo, a Slurm command that failed, a wait for a
    // gc) reach stderr in every command, not only in workers.
    init_tracing();
    let result = match cmd {
        EngineCommand::ExecStage { job } => return exec::worker::run_job_file(registry, &job),
        EngineCommand::Run(a) => run::run(a, registry),
        EngineCommand::Status(a) => status::status(a, registry),
        EngineCommand::Explain(a) => explain::explain(a, registry),
        EngineCommand::Dag(a) => dag::dag(a, registry),
        EngineCommand::Gc(a) => gc::gc(a, registry),
        EngineCommand::Stages(a) => stages::stages(a, registry),
    };
    match result {
        Ok(code) => code,
        Err(e) => report_error(&e),
    }
}

/// Prints an error chain; bad input (spec errors, [`BadInput`]) exits with 2, the rest with 1.
pub fn report_error(e: &anyhow::Error) -> ExitCode {
    if let Some(spec) = e.downcast_ref::<SpecError>() {
        eprintln!("error: {spec}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    ExitCode::from(if e.downcast_ref::<BadInput>().is_some() { EXIT_BAD_INPUT } else { EXIT_STAGE_FAILED })
}

/// Marks an error as the user's input being wrong (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);
