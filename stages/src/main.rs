//! `pipeline`: declarative mitosis-detection experiments. This front end never loads libtorch;
//! commands and stages that need it run in the sibling `pipeline-torch`.

use std::process::ExitCode;

use clap::Parser;
use stages::cli::{BenchCommand, Cli, Command, forward_to_torch_worker};

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when whoever reads stdout goes away (`pipeline … | head`)
    // instead of panicking on the broken pipe. Worker processes reset this themselves.
    // SAFETY: called before any thread exists; SIG_DFL is a valid disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let registry = stages::registry();
    let result = match cli.command {
        Command::Engine(cmd) => return engine::cli::execute(cmd, &registry),
        Command::Detect(a) if a.experiment.is_some() => {
            engine::cli::init_tracing();
            return stages::cli::detect::run(&a, &registry).unwrap_or_else(|e| engine::cli::report_error(&e));
        }
        Command::Detect(_)
        | Command::Weights(_)
        | Command::Bench(BenchCommand::Train(_))
        | Command::Bench(BenchCommand::Infer(_)) => {
            return forward_to_torch_worker();
        }
        Command::Inspect(a) => stages::cli::inspect::run(a),
        Command::Synth(a) => stages::cli::synth::run(a),
        Command::Score(a) => stages::cli::score::run(a),
        Command::Export(a) => stages::cli::export::run(a, &registry),
        Command::Compare(a) => stages::cli::compare::run(a, &registry),
        Command::Bench(BenchCommand::Loader(a)) => stages::cli::bench::run(a),
        Command::Bench(BenchCommand::Bootstrap(a)) => stages::cli::bench::run_bootstrap(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => engine::cli::report_error(&e),
    }
}
