//! A pipeline binary with tiny test stage kinds, so the engine's behaviour (freshness, crash
//! safety, concurrency, errors) is tested through the real CLI without any MIDOG stage.
//!
//! Kinds: `source` (copies an external file), `transform` (appends a line to its upstream's
//! text), `combine` (concatenates all its upstreams under their stage names, like a report
//! that shows names), `gpu_probe` (wants GPUs and writes down the devices it was given). Each can sleep in small steps (to be
//! killed or interrupted mid-stage), append to a `count_file` (to count executions; the
//! execution's number also goes to the stage's log) and write `resume_bytes` of resume state.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use engine::cli::EngineCommand;
use engine::{ExternalInput, ParamError, Registry, StageContext, StageDef, StageError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(name = "pipeline-testbed", about = "engine test bed")]
struct Cli {
    #[command(subcommand)]
    command: EngineCommand,
}

/// Behaviour shared by every test kind (serde's `flatten` cannot be combined with
/// `deny_unknown_fields`, so each params struct repeats these fields).
struct Common<'a> {
    sleep_ms: u64,
    count_file: &'a Option<PathBuf>,
    fail: bool,
    resume_bytes: u64,
}

macro_rules! common_fields {
    ($(#[$m:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields, default)]
        struct $name {
            $($field: $ty,)*
            /// Milliseconds to sleep (in 20 ms steps, checking for cancellation).
            sleep_ms: u64,
            /// A file to append one line to per execution.
            count_file: Option<PathBuf>,
            /// Fail instead of producing output.
            fail: bool,
            /// Bytes of resume state to write before sleeping (as a training's checkpoints).
            resume_bytes: u64,
        }
        impl $name {
            fn common(&self) -> Common<'_> {
                Common {
                    sleep_ms: self.sleep_ms,
                    count_file: &self.count_file,
                    fail: self.fail,
                    resume_bytes: self.resume_bytes,
                }
            }
        }
    };
}

common_fields!(SourceParams { file: PathBuf });
common_fields!(TransformParams { factor: i64, weight: f64 });
common_fields!(
    #[derive(Default)]
    CombineParams {}
);
common_fields!(GpuProbeParams { gpus: usize });

impl Default for SourceParams {
    fn default() -> Self {
        SourceParams { file: PathBuf::new(), sleep_ms: 0, count_file: None, fail: false, resume_bytes: 0 }
    }
}

impl Default for TransformParams {
    fn default() -> Self {
        TransformParams { factor: 1, weight: 1e-4, sleep_ms: 0, count_file: None, fail: false, resume_bytes: 0 }
    }
}

impl Default for GpuProbeParams {
    fn default() -> Self {
        GpuProbeParams { gpus: 1, sleep_ms: 0, count_file: None, fail: false, resume_bytes: 0 }
    }
}

struct Source;
impl StageDef for Source {
    type Params = SourceParams;
    const KIND: &'static str = "source";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "copies an external file";
    const NEEDS: &'static [&'static str] = &[];
    const PATH_PARAMS: &'static [&'static str] = &["file"];
    fn external_inputs(p: &SourceParams, base: &Path) -> Result<Vec<ExternalInput>, ParamError> {
        let path = base.join(&p.file);
        if !path.is_file() {
            return Err(ParamError::new(&["file"], format!("input file {} does not exist", path.display())));
        }
        Ok(vec![ExternalInput { name: p.file.display().to_string(), path }])
    }
}

struct Transform;
impl StageDef for Transform {
    type Params = TransformParams;
    const KIND: &'static str = "transform";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "appends a line to its upstream's text";
    const NEEDS: &'static [&'static str] = &["source"];
}

/// The same kind with a bumped implementation version (selected by TESTBED_TRANSFORM_V2=1).
struct TransformV2;
impl StageDef for TransformV2 {
    type Params = TransformParams;
    const KIND: &'static str = "transform";
    const VERSION: u32 = 2;
    const SUMMARY: &'static str = "appends a line to its upstream's text";
    const NEEDS: &'static [&'static str] = &["source"];
}

struct Combine;
impl StageDef for Combine {
    type Params = CombineParams;
    const KIND: &'static str = "combine";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "concatenates its upstreams under their names";
    const NEEDS: &'static [&'static str] = &[];
    const NAMES_IN_OUTPUT: bool = true;
}

/// A stage that wants GPUs, so executors' GPU handling (Slurm's `--gres`) can be tested.
struct GpuProbe;
impl StageDef for GpuProbe {
    type Params = GpuProbeParams;
    const KIND: &'static str = "gpu_probe";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "wants GPUs; writes the devices it was given";
    const NEEDS: &'static [&'static str] = &[];
    fn resources(p: &GpuProbeParams) -> engine::Resources {
        engine::Resources { gpus: p.gpus, ..engine::Resources::default() }
    }
}

fn common(c: Common<'_>, ctx: &StageContext) -> Result<(), StageError> {
    if let Some(f) = &c.count_file {
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(f).map_err(|e| StageError::io(f, e))?;
        writeln!(file, "{} {}", ctx.name, ctx.key).map_err(|e| StageError::io(f, e))?;
        let text = std::fs::read_to_string(f).map_err(|e| StageError::io(f, e))?;
        let n = text.lines().filter(|l| l.split_whitespace().next() == Some(ctx.name.as_str())).count();
        eprintln!("execution {n} of `{}`", ctx.name);
    }
    if c.resume_bytes > 0 {
        let p = ctx.resume_dir()?.join("state.bin");
        std::fs::write(&p, vec![7u8; c.resume_bytes as usize]).map_err(|e| StageError::io(p, e))?;
    }
    let steps = c.sleep_ms / 20;
    ctx.progress().start(steps, "sleeping");
    // A marker so tests can tell the stage is running.
    std::fs::write(ctx.out_dir().join(".started"), b"").map_err(|e| StageError::io(ctx.out_dir(), e))?;
    for _ in 0..steps {
        ctx.check_cancelled()?;
        std::thread::sleep(Duration::from_millis(20));
        ctx.progress().inc(1);
    }
    std::fs::remove_file(ctx.out_dir().join(".started")).map_err(|e| StageError::io(ctx.out_dir(), e))?;
    if c.fail {
        eprintln!("about to fail on purpose");
        return Err(StageError::msg("failed on purpose (fail = true)"));
    }
    Ok(())
}

fn write(ctx: &StageContext, text: &str) -> Result<(), StageError> {
    let p = ctx.out_dir().join("data.txt");
    std::fs::write(&p, text).map_err(|e| StageError::io(p, e))
}

fn read(dir: &Path) -> Result<String, StageError> {
    let p = dir.join("data.txt");
    std::fs::read_to_string(&p).map_err(|e| StageError::io(p, e))
}

fn run_source(p: &SourceParams, ctx: &StageContext) -> Result<(), StageError> {
    common(p.common(), ctx)?;
    let path = &ctx.external[0].path;
    let text = std::fs::read_to_string(path).map_err(|e| StageError::io(path, e))?;
    write(ctx, &text)
}

fn run_transform(p: &TransformParams, ctx: &StageContext) -> Result<(), StageError> {
    common(p.common(), ctx)?;
    let up = ctx.inputs.first().ok_or_else(|| StageError::msg("transform needs one upstream"))?;
    let text = read(&up.dir)?;
    write(ctx, &format!("{text}\n{} x{} w{}", ctx.kind, p.factor, p.weight))
}

fn run_combine(p: &CombineParams, ctx: &StageContext) -> Result<(), StageError> {
    common(p.common(), ctx)?;
    let mut parts = Vec::new();
    for a in &ctx.inputs {
        parts.push(format!("== {} ==\n{}", a.name, read(&a.dir)?));
    }
    write(ctx, &format!("{} [{} / {}]\n{}", ctx.name, ctx.experiment, ctx.variant, parts.join("\n")))?;
    std::fs::write(ctx.out_dir().join("summary.txt"), format!("combined {} inputs\n", parts.len()))
        .map_err(|e| StageError::io(ctx.out_dir(), e))
}

fn run_gpu_probe(p: &GpuProbeParams, ctx: &StageContext) -> Result<(), StageError> {
    common(p.common(), ctx)?;
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    write(ctx, &format!("devices={:?}\nCUDA_VISIBLE_DEVICES={visible}\n", ctx.devices))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut registry = Registry::new();
    registry.register::<Source>(run_source).register::<Combine>(run_combine).register::<GpuProbe>(run_gpu_probe);
    if std::env::var_os("TESTBED_TRANSFORM_V2").is_some() {
        registry.register::<TransformV2>(run_transform);
    } else {
        registry.register::<Transform>(run_transform);
    }
    engine::cli::execute(cli.command, &registry)
}
