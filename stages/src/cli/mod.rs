//! The product's own commands, next to the engine's (`run`, `status`, …).

pub mod bench;
pub mod compare;
pub mod detect;
pub mod export;
pub mod inspect;
pub mod score;
pub mod synth;

use std::process::ExitCode;

/// Runs the same command line in the libtorch worker (`pipeline-torch`), which sits next to
/// `pipeline`; the front end itself never loads libtorch, so it starts in milliseconds.
pub fn forward_to_torch_worker() -> ExitCode {
    exec_torch_worker(std::env::args_os().skip(1).collect())
}

/// Replaces this process with `pipeline-torch ARGS…`.
pub fn exec_torch_worker(args: Vec<std::ffi::OsString>) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let exe = match engine::exec::local::worker_exe(Some(crate::TORCH_WORKER)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let err = std::process::Command::new(&exe).args(args).exec();
    eprintln!("error: cannot start {}: {err}", exe.display());
    ExitCode::from(1)
}

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use engine::cli::EngineCommand;

#[derive(Parser, Debug)]
#[command(
    name = "pipeline",
    version,
    about = "Declarative deep-learning experiments for mitosis detection (MIDOG 2021)",
    long_about = "Declarative deep-learning experiments for mitosis detection (MIDOG 2021).\n\n\
        An experiment file (TOML) lists stages: dataset → split → sample → train → tile_infer → nms → score → report.\n\
        `pipeline run` runs only the stages whose inputs changed; everything else comes from the cache\n\
        (./cache, or --cache-dir / PIPELINE_CACHE). `pipeline stages` documents every parameter.",
    after_help = "Examples:\n  pipeline run experiments/quickstart.toml         run (only what changed)\n  pipeline status experiments/quickstart.toml      what would run, and why\n  pipeline explain experiments/quickstart.toml nms which field changed\n  pipeline stages train                            the train stage's parameters\n  pipeline inspect data/midog                      a dataset at a glance\n  pipeline export experiments/*.toml -o results.parquet"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Engine(EngineCommand),
    /// Describe a dataset directory or a TIFF file; extract a region as PNG.
    ///
    /// Examples:
    ///   pipeline inspect data/midog
    ///   pipeline inspect data/midog/001.tiff --region 2000,1500,512,512 --out crop.png
    Inspect(inspect::InspectArgs),
    /// Generate a synthetic MIDOG-like dataset (MIDOG.json + tiled TIFFs), or with
    /// --tumor-types a multi-domain set in the MIDOG++ layout (MIDOG++.json + datasets_xvalidation.csv).
    ///
    /// Example: pipeline synth data/synth --images-per-scanner 10 --scale 0.2 --density 40
    /// Example: pipeline synth data/synthpp --tumor-types all --images-per-tumor-type 5 --scale 0.1 --density 40
    Synth(synth::SynthArgs),
    /// Score detections in the official MIDOG JSON format against ground truth.
    ///
    /// Example: pipeline score --ground-truth data/midog/MIDOG.json --detections dets.json --threshold 0.5
    Score(score::ScoreArgs),
    /// Run a trained model over whole images and write official MIDOG JSON detections.
    ///
    /// Examples:
    ///   pipeline detect --experiment experiments/quickstart.toml slide.tiff -o dets.json
    ///   pipeline detect --checkpoint best.safetensors data/midog/007.tiff -o dets.json
    Detect(DetectArgs),
    /// Compare variants: each metric against each swept key, per scanner (table + PNG charts).
    ///
    /// Example: pipeline compare experiments/overlap.toml --metric f1
    Compare(compare::CompareArgs),
    /// Export the metrics and parameters of every run and variant as one Parquet table.
    ///
    /// Example: pipeline export experiments/sampling.toml -o sampling.parquet
    Export(export::ExportArgs),
    /// Measure throughput: the patch loader, or training steps.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Pretrained weights for the train stage's `backbone_weights`.
    #[command(subcommand)]
    Weights(WeightsCommand),
}

#[derive(Subcommand, Debug)]
pub enum WeightsCommand {
    /// Download torchvision's ImageNet weights of a ResNet (checksum checked), convert them to
    /// the safetensors layout the train stage loads, check that they load, and print the
    /// `backbone_weights = …` line to paste into an experiment.
    ///
    /// Runs the pipeline's own Python (`$PIPELINE_PYTHON`, torch only) for the download and the
    /// conversion; the file lands in `DIR/<backbone>-imagenet.safetensors`. `--from` converts a
    /// state dict already on disk instead (a `.pth` from torchvision or `torch.save`).
    ///
    /// Examples:
    ///   pipeline weights fetch resnet18
    ///   pipeline weights fetch resnet50 -o /shared/weights
    ///   pipeline weights fetch resnet18 --from ~/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth
    Fetch(WeightsFetchArgs),
}

/// The backbones torchvision publishes ImageNet weights for that the train stage builds.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsBackbone {
    Resnet18,
    Resnet34,
    Resnet50,
}

#[derive(Args, Debug, Clone)]
pub struct WeightsFetchArgs {
    #[arg(value_enum)]
    pub backbone: WeightsBackbone,
    /// Directory to write into.
    #[arg(short, long, value_name = "DIR", default_value = "weights")]
    pub output: PathBuf,
    /// Convert this state dict (`.pth`) instead of downloading (offline machines, tests).
    #[arg(long, value_name = "STATE.pth")]
    pub from: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Patches/s of the augmented patch loader (optionally against openslide + numpy).
    ///
    /// Example: pipeline bench loader data/synth --threads 1,2 --python ~/.cache/midog-pipeline/torch-2.11.0/bin/python
    Loader(bench::LoaderBenchArgs),
    /// Training img/s of the RetinaNet with synthetic tensors or the real loader.
    ///
    /// Example: pipeline bench train --backbone resnet18 --batch 16 --size 512 --device cuda
    Train(TrainBenchArgs),
    /// Seconds per whole image of tiled inference.
    ///
    /// Example: pipeline bench infer --width 7215 --height 5412 --device cpu
    Infer(InferBenchArgs),
    /// Milliseconds of the score stage's bootstrap intervals and of a paired comparison.
    ///
    /// Example: pipeline bench bootstrap --images 200 --resamples 2000 --threads 1,2
    Bootstrap(bench::BootstrapBenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct DetectArgs {
    /// A checkpoint written by the train stage (carries its model params), or torchvision
    /// RetinaNet weights as safetensors (then give the architecture with --model).
    #[arg(long, value_name = "CKPT.safetensors", required_unless_present = "experiment")]
    pub checkpoint: Option<PathBuf>,
    /// Architecture for torchvision weights: a TOML file with the train stage's model keys.
    #[arg(long, value_name = "model.toml")]
    pub model: Option<PathBuf>,
    /// Use what an experiment's last run made: the trained checkpoint, its tile_infer and nms
    /// parameters and the threshold its score stage chose on validation (see --stage).
    #[arg(long, value_name = "EXP.toml", conflicts_with_all = ["checkpoint", "model"])]
    pub experiment: Option<PathBuf>,
    /// With --experiment: the variant of a sweep.
    #[arg(long, value_name = "NAME", requires = "experiment")]
    pub variant: Option<String>,
    /// With --experiment: the score (or nms) stage whose chain nms ← tile_infer ← train to use
    /// (default: the experiment's one score stage of a trained model).
    #[arg(long, value_name = "STAGE", requires = "experiment")]
    pub stage: Option<String>,
    /// Whole-slide or region images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Output JSON (official MIDOG "Multiple points" format, keyed by file name).
    #[arg(short, long, value_name = "DETS.json")]
    pub output: PathBuf,
    #[arg(long, default_value_t = 512, conflicts_with = "experiment")]
    pub tile_size: u32,
    /// Overlap between tiles: a fraction (< 1) or pixels (≥ 1).
    #[arg(long, default_value_t = 0.1, conflicts_with = "experiment")]
    pub overlap: f64,
    /// Keep candidates above this score (before NMS).
    #[arg(long, default_value_t = 0.05, conflicts_with = "experiment")]
    pub min_score: f64,
    /// Per-tile IoU NMS threshold.
    #[arg(long, default_value_t = 0.4, conflicts_with = "experiment")]
    pub iou: f64,
    /// Image-level centre-distance NMS radius in pixels.
    #[arg(long, default_value_t = 25.0, conflicts_with = "experiment")]
    pub radius_px: f64,
    /// The same radius in µm, converted with each image's resolution (overrides --radius-px).
    #[arg(long, conflicts_with = "experiment")]
    pub radius_um: Option<f64>,
    /// Write only detections scoring above this (after NMS), as the score stage counts them.
    #[arg(long, conflicts_with = "experiment")]
    pub threshold: Option<f64>,
    /// Resolution when an image file carries none.
    #[arg(long)]
    pub um_per_px: Option<f64>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// fp32 or bf16.
    #[arg(long, default_value = "fp32", conflicts_with = "experiment")]
    pub precision: String,
    #[arg(long, default_value_t = 8, conflicts_with = "experiment")]
    pub batch_size: usize,
    /// Also write the raw per-tile boxes (before NMS) as JSON, for comparisons.
    #[arg(long)]
    pub raw_boxes: Option<PathBuf>,
    #[command(flatten)]
    pub results: engine::cli::ResultsArgs,
    #[command(flatten)]
    pub cache: engine::cli::CacheArgs,
}

impl DetectArgs {
    /// The key of each image in the output: its file name, as the MIDOG evaluation matches
    /// detections to ground truth. Two inputs with one file name would share a key (the second
    /// would silently replace the first), so that is refused, naming both.
    pub fn output_keys(&self) -> Result<Vec<String>, String> {
        let mut first: std::collections::BTreeMap<String, &PathBuf> = std::collections::BTreeMap::new();
        let mut keys = Vec::with_capacity(self.images.len());
        for path in &self.images {
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                return Err(format!("{}: not a file name", path.display()));
            };
            if let Some(earlier) = first.insert(name.clone(), path) {
                return Err(format!(
                    "{} and {} have the same file name `{name}`, and the detections file is keyed by file \
                     name (as the MIDOG evaluation matches them to ground truth); run detect once per \
                     directory, or give each image once",
                    earlier.display(),
                    path.display()
                ));
            }
            keys.push(name);
        }
        Ok(keys)
    }
}

#[derive(Args, Debug, Clone)]
pub struct TrainBenchArgs {
    #[arg(long, default_value = "resnet18")]
    pub backbone: String,
    /// Add the domain-adversarial step (a two-domain classifier on P3–P5 behind gradient
    /// reversal, as `[stages.train.domain_adversarial]` with its defaults) to every step.
    #[arg(long)]
    pub domain_adversarial: bool,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 512)]
    pub size: u32,
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// fp32, bf16 or fp16.
    #[arg(long, default_value = "fp32")]
    pub precision: String,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Feed real patches through the loader from this dataset directory instead of synthetic tensors.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Loader threads with --dataset.
    #[arg(long, default_value_t = 4)]
    pub loader_threads: usize,
    /// A model TOML (the train stage's model keys) instead of the torchvision defaults.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Then time as many steps again phase by phase (input, forward + loss, backward, optimiser),
    /// each closed by a device sync: where a step's time goes (synthetic tensors only).
    #[arg(long)]
    pub breakdown: bool,
    /// Leave cuDNN's autotuner off (the stages turn it on for CUDA), to measure what it buys.
    #[arg(long)]
    pub no_cudnn_benchmark: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct InferBenchArgs {
    /// A checkpoint; default: a randomly initialised ResNet-18 RetinaNet.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// An image to run on; default: a synthetic image of --width × --height.
    #[arg(long)]
    pub image: Option<PathBuf>,
    #[arg(long, default_value_t = 7215)]
    pub width: u32,
    #[arg(long, default_value_t = 5412)]
    pub height: u32,
    #[arg(long, default_value_t = 512)]
    pub tile_size: u32,
    #[arg(long, default_value_t = 0.1)]
    pub overlap: f64,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value = "fp32")]
    pub precision: String,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Tile-decoding threads (default: all cores but one on CUDA, half of them on the CPU).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Leave cuDNN's autotuner off (the stages turn it on for CUDA), to measure what it buys.
    #[arg(long)]
    pub no_cudnn_benchmark: bool,
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_refuses_two_images_with_one_file_name() {
        let parse = |args: &[&str]| match Cli::parse_from(
            [&["pipeline", "detect", "--checkpoint", "m", "-o", "d.json"], args].concat(),
        )
        .command
        {
            Command::Detect(a) => a,
            _ => unreachable!(),
        };
        assert_eq!(parse(&["a/001.tiff", "b/002.tiff"]).output_keys().unwrap(), ["001.tiff", "002.tiff"]);
        let e = parse(&["a/001.tiff", "b/001.tiff"]).output_keys().unwrap_err();
        assert!(e.contains("a/001.tiff and b/001.tiff") && e.contains("same file name"), "{e}");
        assert!(parse(&["x.tiff", "x.tiff"]).output_keys().is_err());
    }
}
