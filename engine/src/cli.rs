//! The engine's commands (`run`, `status`, `explain`, `dag`, `gc`, `stages`, and the hidden
//! `exec-stage` used by workers). A product binary flattens [`EngineCommand`] into its own
//! command enum and passes its [`Registry`].

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};

use crate::exec::{self, Backend, RunOptions, Status};
use crate::explain;
use crate::filedigest::DigestMemo;
use crate::plan::Plan;
use crate::progress::{RunDisplay, seconds, table};
use crate::spec::{Experiment, SpecError};
use crate::stage::Registry;
use crate::store::Store;

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
    /// Remove cache entries no experiment reaches any more.
    ///
    /// Without --keep, keeps the latest output of every stage of every experiment ever run.
    /// Example: pipeline gc --keep experiments/baseline.toml --dry-run
    Gc(GcArgs),
    /// List stage kinds with their parameters, types, defaults and documentation.
    ///
    /// Example: pipeline stages train
    Stages(StagesArgs),
    /// Run one stage from a job file (used by `run` and by Slurm jobs).
    #[command(hide = true)]
    ExecStage {
        #[arg(long)]
        job: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The experiment file.
    pub experiment: PathBuf,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// CPU slots for stages running at once (default: the number of cores).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// GPUs to use (default: detected when a stage wants one).
    #[arg(long, value_name = "N")]
    pub gpus: Option<usize>,
    /// Print one JSON array of stage results on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Recompute this stage even if cached (repeatable; applies to every variant).
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
    /// Only say what would run.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop everything at the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// Run only these variants of a sweep (repeatable).
    #[arg(long, value_name = "NAME")]
    pub variant: Vec<String>,
    /// Rehash every external input instead of trusting unchanged (inode, size, mtime).
    #[arg(long)]
    pub verify: bool,
    /// Where stages run: on this machine, or as Slurm jobs (overrides [run] executor).
    #[arg(long, value_enum)]
    pub executor: Option<ExecutorKind>,
    /// No progress output; only the final table (or JSON).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    Local,
    Slurm,
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    pub experiment: PathBuf,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub verify: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ExplainArgs {
    pub experiment: PathBuf,
    /// Stage name, e.g. `train`.
    pub stage: String,
    /// Variant (default: every variant).
    #[arg(long)]
    pub variant: Option<String>,
    #[command(flatten)]
    pub cache: CacheArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DagFormat {
    Text,
    Dot,
    Mermaid,
}

#[derive(Args, Debug, Clone)]
pub struct DagArgs {
    pub experiment: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: DagFormat,
    #[command(flatten)]
    pub cache: CacheArgs,
}

#[derive(Args, Debug, Clone)]
pub struct GcArgs {
    /// Keep what these experiments reach (all their variants); remove the rest.
    #[arg(long, value_name = "EXP.toml")]
    pub keep: Vec<PathBuf>,
    /// Only list what would go and how big it is.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
}

#[derive(Args, Debug, Clone)]
pub struct StagesArgs {
    /// Show one kind only.
    pub kind: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
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
    if let EngineCommand::ExecStage { job } = &cmd {
        init_tracing();
        return exec::worker::run_job_file(registry, job);
    }
    let result = match cmd {
        EngineCommand::Run(a) => run(a, registry),
        EngineCommand::Status(a) => status(a, registry),
        EngineCommand::Explain(a) => explain_cmd(a, registry),
        EngineCommand::Dag(a) => dag(a, registry),
        EngineCommand::Gc(a) => gc(a, registry),
        EngineCommand::Stages(a) => stages(a, registry),
        EngineCommand::ExecStage { .. } => unreachable!(),
    };
    match result {
        Ok(code) => code,
        Err(e) => report_error(&e),
    }
}

/// Prints an error chain; spec errors exit with 2, everything else with 1.
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

pub fn open_store(cache: &CacheArgs) -> Result<Store> {
    Store::open(&cache.cache_dir)
        .with_context(|| format!("cannot open the cache directory {}", cache.cache_dir.display()))
}

/// Loads and plans an experiment (`variants`: keep only these, if any).
pub fn load_plan(path: &Path, registry: &Registry, store: &Store, variants: &[String], verify: bool) -> Result<Plan> {
    let mut exp = Experiment::load(path)?;
    if !variants.is_empty() {
        for v in variants {
            if !exp.variants.iter().any(|x| &x.name == v) {
                let names: Vec<&str> = exp.variants.iter().map(|v| v.name.as_str()).collect();
                return Err(BadInput(format!(
                    "no variant `{v}` in {}; variants: {}",
                    path.display(),
                    names.join(", ")
                ))
                .into());
            }
        }
        exp.variants.retain(|x| variants.contains(&x.name));
    }
    let mut memo = DigestMemo::load(&store.memo_path(), verify);
    let plan = Plan::build(exp, registry, &mut memo)?;
    if let Err(e) = memo.save() {
        tracing::warn!("could not save the input digest memo: {e}");
    }
    Ok(plan)
}

fn run(a: RunArgs, registry: &Registry) -> Result<ExitCode> {
    let store = open_store(&a.cache)?;
    let plan = load_plan(&a.experiment, registry, &store, &a.variant, a.verify)?;
    for f in &a.force {
        if !plan.variants.iter().any(|v| v.stages.contains_key(f)) {
            return Err(BadInput(format!("--force {f}: no stage named `{f}` in {}", a.experiment.display())).into());
        }
    }
    // [slurm] is checked even for a local run: a misspelt key is an error wherever it is run.
    let slurm_config = exec::slurm::SlurmConfig::from_experiment(&plan.experiment, registry.kinds())?;
    if a.dry_run {
        return status_of(&plan, &store, a.json, &a.force);
    }
    let jobs = a.jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let executor = match a.executor {
        Some(e) => e,
        None => match plan.experiment.run.get("executor").and_then(|v| v.as_str()) {
            None | Some("local") => ExecutorKind::Local,
            Some("slurm") => ExecutorKind::Slurm,
            Some(other) => {
                return Err(BadInput(format!(
                    "{}: [run] executor = \"{other}\": use \"local\" or \"slurm\"",
                    a.experiment.display()
                ))
                .into());
            }
        },
    };
    let mut backend: Box<dyn Backend> = match executor {
        ExecutorKind::Local => Box::new(exec::local::LocalBackend::new()),
        ExecutorKind::Slurm => match exec::slurm::SlurmBackend::new(slurm_config, &store, &plan) {
            Ok(b) => Box::new(b),
            Err(e @ exec::slurm::command::SlurmError::NotInstalled { .. }) => bail!(BadInput(e.to_string())),
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("cannot use Slurm from this machine (to find jobs of earlier runs and to submit)"));
            }
        },
    };
    store.clean_stale();
    let display = RunDisplay::new(a.quiet || a.json);
    let cached =
        plan.jobs.iter().filter(|j| store.has(&j.key) && !j.users.iter().any(|(_, n)| a.force.contains(n))).count();
    display.line(&format!(
        "{}: {} stage{} in {} variant{}; {} cached, {} to run ({} executor, cache {})",
        plan.experiment.name,
        plan.jobs.len(),
        if plan.jobs.len() == 1 { "" } else { "s" },
        plan.variants.len(),
        if plan.variants.len() == 1 { "" } else { "s" },
        cached,
        plan.jobs.len() - cached,
        backend.name(),
        store.root().display()
    ));
    if executor == ExecutorKind::Slurm
        && let Some(warning) = exec::slurm::local_cache_warning(store.root())
    {
        display.line(&warning);
    }
    let opts = RunOptions { jobs, gpus: a.gpus, force: a.force.clone(), fail_fast: a.fail_fast };
    let report = exec::execute(&plan, &store, backend.as_mut(), &opts, &display);

    let rows = result_rows(&plan, &report);
    if a.json {
        let json: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"stage": r.stage, "variant": r.variant, "kind": r.kind, "status": r.status.as_str(), "key": r.key, "seconds": r.seconds})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        let body: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut row = vec![r.stage.clone()];
                if plan.variants.len() > 1 {
                    row.push(r.variant.clone());
                }
                row.extend([
                    r.kind.clone(),
                    r.status.as_str().to_string(),
                    if r.status == Status::Ran { seconds(r.seconds) } else { String::new() },
                    r.key[..12].to_string(),
                ]);
                row
            })
            .collect();
        let header: Vec<&str> = if plan.variants.len() > 1 {
            vec!["stage", "variant", "kind", "status", "time", "key"]
        } else {
            vec!["stage", "kind", "status", "time", "key"]
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "\n{}", table(&header, &body))?;
        print_summaries(&plan, &store, &report, &mut out)?;
    }
    if report.interrupted {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    Ok(if report.failed() { ExitCode::from(EXIT_STAGE_FAILED) } else { ExitCode::SUCCESS })
}

struct ResultRow {
    stage: String,
    variant: String,
    kind: String,
    status: Status,
    key: String,
    seconds: f64,
}

fn result_rows(plan: &Plan, report: &exec::RunReport) -> Vec<ResultRow> {
    let mut rows = Vec::new();
    for vp in &plan.variants {
        for (name, s) in &vp.stages {
            let idx = plan.job_of(&s.key).expect("every stage has a job");
            let o = &report.outcomes[idx];
            // A job shared by several variants ran once; the others show it as cached.
            let first_user = &plan.jobs[idx].users[0];
            let status = if o.status == Status::Ran && (first_user.0 != vp.variant.name || &first_user.1 != name) {
                Status::Cached
            } else {
                o.status
            };
            rows.push(ResultRow {
                stage: name.clone(),
                variant: vp.variant.name.clone(),
                kind: s.kind.clone(),
                status,
                key: s.key.to_string(),
                seconds: if status == Status::Ran { o.seconds } else { 0.0 },
            });
        }
    }
    rows
}

/// Final stages may leave a `summary.txt` (e.g. the report's F1 table): printed after the run.
fn print_summaries(plan: &Plan, store: &Store, report: &exec::RunReport, out: &mut dyn Write) -> Result<()> {
    let mut printed = HashSet::new();
    for vp in &plan.variants {
        let needed: HashSet<&String> = vp.stages.values().flat_map(|s| s.needs.iter()).collect();
        for (name, s) in &vp.stages {
            if needed.contains(name) || !printed.insert(s.key.clone()) {
                continue;
            }
            let idx = plan.job_of(&s.key).expect("job");
            if !matches!(report.outcomes[idx].status, Status::Ran | Status::Cached) {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(store.out_dir(&s.key).join("summary.txt")) {
                let title = exec::label(plan, &vp.variant.name, name);
                writeln!(out, "\n{title}\n{}", text.trim_end())?;
            }
        }
    }
    Ok(())
}

fn status(a: StatusArgs, registry: &Registry) -> Result<ExitCode> {
    let store = open_store(&a.cache)?;
    let plan = load_plan(&a.experiment, registry, &store, &[], a.verify)?;
    status_of(&plan, &store, a.json, &[])
}

fn status_of(plan: &Plan, store: &Store, json: bool, force: &[String]) -> Result<ExitCode> {
    let mut rows = Vec::new();
    let mut out_json = Vec::new();
    // Stages submitted to Slurm by an earlier or concurrent run (one squeue for all of them).
    let uncached: Vec<&crate::key::StageKey> = plan.jobs.iter().map(|j| &j.key).filter(|k| !store.has(k)).collect();
    let slurm_jobs = exec::slurm::job_statuses(store, &uncached);
    for vp in &plan.variants {
        for (name, s) in &vp.stages {
            let cached = store.has(&s.key) && !force.contains(name);
            let last = store.last_run(&plan.experiment.name, &vp.variant.name, name);
            let mut reasons = explain::reasons(&s.inputs, last.as_ref(), cached);
            if force.contains(name) {
                reasons = vec![explain::Reason::Forced];
            }
            let mut why: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
            let slurm_job = if cached { None } else { slurm_jobs.get(&s.key) };
            let (state, json_state) = match slurm_job {
                Some(j) if j.is_live() && j.state.as_deref() == Some("PENDING") => ("queued", "queued"),
                Some(j) if j.is_live() => ("running", "running"),
                _ if cached => ("cached", "cached"),
                _ => ("will run", "run"),
            };
            if let Some(j) = slurm_job {
                why.insert(0, if j.is_live() { j.describe() } else { format!("last {}", j.describe()) });
            }
            let mut entry = serde_json::json!({
                "stage": name, "variant": vp.variant.name, "kind": s.kind, "status": json_state,
                "key": s.key.as_str(), "reasons": why,
            });
            if let Some(j) = slurm_job {
                entry["slurm_job"] = serde_json::json!({"id": j.job_id, "state": j.state});
            }
            out_json.push(entry);
            let mut row = vec![name.clone()];
            if plan.variants.len() > 1 {
                row.push(vp.variant.name.clone());
            }
            row.extend([s.kind.clone(), state.to_string(), why.join("; ")]);
            rows.push(row);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out_json)?);
    } else {
        let header: Vec<&str> = if plan.variants.len() > 1 {
            vec!["stage", "variant", "kind", "status", "why"]
        } else {
            vec!["stage", "kind", "status", "why"]
        };
        println!("{}", table(&header, &rows));
    }
    Ok(ExitCode::SUCCESS)
}

fn explain_cmd(a: ExplainArgs, registry: &Registry) -> Result<ExitCode> {
    let store = open_store(&a.cache)?;
    let variants: Vec<String> = a.variant.iter().cloned().collect();
    let plan = load_plan(&a.experiment, registry, &store, &variants, false)?;
    let mut found = false;
    for vp in &plan.variants {
        let Some(s) = vp.stages.get(&a.stage) else { continue };
        found = true;
        let cached = store.has(&s.key);
        println!("stage `{}` (kind {}, version {}), variant `{}`", s.name, s.kind, s.inputs.version, vp.variant.name);
        println!("  key now:  {}  ({})", s.key, if cached { "in the cache" } else { "not in the cache" });
        match store.last_run(&plan.experiment.name, &vp.variant.name, &s.name) {
            None => println!("  last run: none recorded for this stage name"),
            Some(last) => {
                println!("  last run: {}  (recorded {})", last.key, ago(last.recorded_unix));
                let diffs = explain::diff(&last.inputs, &s.inputs);
                if diffs.is_empty() {
                    println!(
                        "  no differences: {}",
                        if last.key == s.key { "same key" } else { "key encoding changed" }
                    );
                } else {
                    println!("  differences:");
                    for d in &diffs {
                        match d {
                            explain::Reason::UpstreamChanged { name, old, new } => println!(
                                "    upstream `{name}` changed {} → {}",
                                old.as_deref().map(|k| &k[..12]).unwrap_or("(none)"),
                                &new[..12]
                            ),
                            explain::Reason::InputChanged { name } => {
                                let path = s
                                    .external
                                    .iter()
                                    .find(|e| &e.name == name)
                                    .map(|e| e.path.display().to_string())
                                    .unwrap_or_default();
                                println!("    input file `{name}` changed ({path})");
                            }
                            other => println!("    {other}"),
                        }
                    }
                }
            }
        }
        println!("  params:   {}", serde_json::to_string(&s.inputs.params)?);
        for u in &s.inputs.upstream {
            println!("  upstream: {} ({}) {}", u.name, u.kind, u.key.short());
        }
        if !s.external.is_empty() {
            println!("  inputs:   {} external files", s.external.len());
        }
        println!();
    }
    if !found {
        let names: Vec<String> = plan.variants.first().map(|v| v.stages.keys().cloned().collect()).unwrap_or_default();
        let help = crate::spec::did_you_mean(&a.stage, names.iter().map(|s| s.as_str()))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_else(|| format!("; the stages are: {}", names.join(", ")));
        return Err(BadInput(format!("no stage `{}` in {}{help}", a.stage, a.experiment.display())).into());
    }
    Ok(ExitCode::SUCCESS)
}

fn ago(unix: u64) -> String {
    let d = crate::record::now_unix().saturating_sub(unix);
    match d {
        0..=119 => format!("{d} s ago"),
        120..=7199 => format!("{} min ago", d / 60),
        7200..=172_799 => format!("{} h ago", d / 3600),
        _ => format!("{} days ago", d / 86400),
    }
}

fn dag(a: DagArgs, registry: &Registry) -> Result<ExitCode> {
    let store = open_store(&a.cache)?;
    let plan = load_plan(&a.experiment, registry, &store, &[], false)?;
    let vp = &plan.variants[0];
    let mut out = String::new();
    match a.format {
        DagFormat::Text => {
            for (name, s) in &vp.stages {
                let state = if store.has(&s.key) { "cached" } else { "to run" };
                if s.needs.is_empty() {
                    out.push_str(&format!("{name} ({})  [{state}]\n", s.kind));
                } else {
                    out.push_str(&format!("{name} ({}) ← {}  [{state}]\n", s.kind, s.needs.join(", ")));
                }
            }
            if plan.variants.len() > 1 {
                out.push_str(&format!(
                    "\n{} variants share this graph: {}\n",
                    plan.variants.len(),
                    plan.variants.iter().map(|v| v.variant.name.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        DagFormat::Dot => {
            out.push_str(&format!(
                "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
                plan.experiment.name
            ));
            for (name, s) in &vp.stages {
                out.push_str(&format!("  \"{name}\" [label=\"{name}\\n{}\"];\n", s.kind));
            }
            for (name, s) in &vp.stages {
                for n in &s.needs {
                    out.push_str(&format!("  \"{n}\" -> \"{name}\";\n"));
                }
            }
            out.push_str("}\n");
        }
        DagFormat::Mermaid => {
            out.push_str("graph LR\n");
            for (name, s) in &vp.stages {
                out.push_str(&format!("  {}[\"{name}<br/>{}\"]\n", mermaid_id(name), s.kind));
            }
            for (name, s) in &vp.stages {
                for n in &s.needs {
                    out.push_str(&format!("  {} --> {}\n", mermaid_id(n), mermaid_id(name)));
                }
            }
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn mermaid_id(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

fn gc(a: GcArgs, registry: &Registry) -> Result<ExitCode> {
    let store = open_store(&a.cache)?;
    let keep: HashSet<String> = if a.keep.is_empty() {
        store.all_last_runs().into_iter().map(|l| l.key.to_string()).collect()
    } else {
        let mut keep = HashSet::new();
        for exp in &a.keep {
            let plan = load_plan(exp, registry, &store, &[], false)?;
            keep.extend(plan.jobs.iter().map(|j| j.key.to_string()));
        }
        keep
    };
    let mut removed = 0u64;
    let mut bytes = 0u64;
    let mut kept_bytes = 0u64;
    let mut rows = Vec::new();
    for (key, size) in store.objects() {
        if keep.contains(key.as_str()) {
            kept_bytes += size;
            continue;
        }
        let rec = store.record(&key).ok().flatten();
        let what = rec.map(|r| format!("{} / {} / {}", r.experiment, r.variant, r.stage)).unwrap_or_else(|| "?".into());
        if a.dry_run {
            rows.push(vec![key.short().to_string(), human_bytes(size), what]);
            removed += 1;
            bytes += size;
            continue;
        }
        match store.try_lock(&key)? {
            None => eprintln!("skipping {} (in use by a running stage)", key.short()),
            Some(lock) => {
                store.remove_object(&key, &lock)?;
                rows.push(vec![key.short().to_string(), human_bytes(size), what]);
                removed += 1;
                bytes += size;
            }
        }
    }
    if !rows.is_empty() {
        println!("{}", table(&["key", "size", "experiment / variant / stage"], &rows));
    }
    println!(
        "{} {removed} entr{} ({}); kept {}",
        if a.dry_run { "would remove" } else { "removed" },
        if removed == 1 { "y" } else { "ies" },
        human_bytes(bytes),
        human_bytes(kept_bytes)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

fn stages(a: StagesArgs, registry: &Registry) -> Result<ExitCode> {
    let kinds: Vec<_> = match &a.kind {
        Some(k) => match registry.get(k) {
            Some(s) => vec![s.clone()],
            None => {
                let help = crate::spec::did_you_mean(k, registry.kinds())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(BadInput(format!("no stage kind `{k}`{help}")).into());
            }
        },
        None => registry.iter().cloned().collect(),
    };
    if a.json {
        let v: Vec<serde_json::Value> = kinds
            .iter()
            .map(|s| serde_json::json!({"kind": s.kind(), "version": s.version(), "summary": s.summary(), "needs": s.needs(), "params": s.param_docs()}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    // Pipeline order: a kind after the kinds of its standard upstream.
    fn depth(registry: &Registry, kind: &str, seen: usize) -> usize {
        let Some(s) = registry.get(kind) else { return 0 };
        if seen > 32 {
            return 0;
        }
        s.needs().iter().map(|n| 1 + depth(registry, n, seen + 1)).max().unwrap_or(0)
    }
    let mut kinds = kinds;
    kinds.sort_by_key(|s| (depth(registry, s.kind(), 0), s.kind()));
    for s in kinds {
        println!(
            "{}  (version {}){}",
            s.kind(),
            s.version(),
            if s.needs().is_empty() { String::new() } else { format!("  needs: {}", s.needs().join(", ")) }
        );
        println!("  {}", s.summary());
        let docs = s.param_docs();
        if !docs.is_empty() {
            let rows: Vec<Vec<String>> = docs
                .iter()
                .map(|d| vec![format!("  {}", d.name), d.ty.clone(), d.default.clone(), d.doc.clone()])
                .collect();
            println!("{}", table(&["  param", "type", "default", "doc"], &rows));
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
