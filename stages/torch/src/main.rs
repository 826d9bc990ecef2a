//! `pipeline-torch`: the worker that runs what needs libtorch — the train and tile_infer stages,
//! `pipeline detect`, `pipeline weights fetch` and the training/inference benchmarks. `pipeline` starts it; it is not meant
//! to be called directly (it accepts the same command line).

mod batch_tensor;
mod bench;
mod checkpoint;
mod detect;
mod device;
mod domain_training;
mod fault;
mod image_set;
mod optim;
mod python_env;
mod stain_norm;
mod tensorboard;
mod tile_grid;
mod tile_infer;
mod tiled;
mod train;
mod validate;
mod weights;

use std::process::ExitCode;

use clap::Parser;
use engine::Registry;
use engine::cli::EngineCommand;
use stages::cli::{BenchCommand, Cli, Command, WeightsCommand};

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<torch_stage_defs::train::TrainStage>(train::run)
        .register::<torch_stage_defs::tile_infer::TileInferStage>(tile_infer::run);
    r
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Engine(EngineCommand::ExecStage { .. }) => {
            let Command::Engine(cmd) = cli.command else { unreachable!() };
            return engine::cli::execute(cmd, &registry());
        }
        Command::Detect(a) => {
            engine::cli::init_tracing();
            detect::run(a)
        }
        Command::Weights(WeightsCommand::Fetch(a)) => weights::fetch(a),
        Command::Bench(BenchCommand::Train(a)) => bench::train(a),
        Command::Bench(BenchCommand::Infer(a)) => bench::infer(a),
        _ => {
            eprintln!("error: pipeline-torch only runs the libtorch stages and commands; use `pipeline` instead");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => engine::cli::report_error(&e),
    }
}
