//! `pipeline run`: runs what is not cached, with a progress display, a summary table and the
//! final stages' summaries, then updates the experiment's results view and prints where its
//! main files are.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::{BadInput, CacheArgs, EXIT_INTERRUPTED, EXIT_STAGE_FAILED, ResultsArgs};
use crate::exec::factory::{self, OpenError};
use crate::exec::{self, ExecutorKind, RunOptions, RunReport, Schedule, Status};
use crate::key::StageKey;
use crate::plan::Plan;
use crate::progress::{RunDisplay, display_path, seconds, table};
use crate::spec::DEFAULT_VARIANT;
use crate::stage::Registry;
use crate::store::Store;
use crate::view::{self, Finished, ResultsDir, ViewError, ViewIndex, ViewUpdate};

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The experiment file.
    pub experiment: PathBuf,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub results: ResultsArgs,
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
    /// Where stages run (overrides [run] executor).
    #[arg(long, value_enum)]
    pub executor: Option<ExecutorKind>,
    /// No progress output; only the final table (or JSON).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub(super) fn run(a: RunArgs, registry: &Registry) -> Result<ExitCode> {
    let store = Store::open(&a.cache.cache_dir)?;
    let plan = Plan::load(&a.experiment, registry, &store, &a.variant, a.verify)?;
    for f in &a.force {
        if !plan.variants.iter().any(|v| v.stages.contains_key(f)) {
            return Err(BadInput(format!("--force {f}: no stage named `{f}` in {}", a.experiment.display())).into());
        }
    }
    if a.dry_run {
        let schedule = Schedule::new(&plan, &store, &a.force);
        return super::status::print(&plan, &store, &schedule, a.json);
    }
    let results = ResultsDir::create(&a.results.results_dir).map_err(|e| match e {
        ViewError::NotADirectory { .. } => anyhow::Error::new(BadInput(e.to_string())),
        other => anyhow::Error::new(other),
    })?;
    let jobs = a.jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let executor = a.executor.unwrap_or(plan.run.executor);
    // Pin every key of the plan before looking at the cache: a gc from now on keeps what this
    // run reads and produces, and one removing right now is waited for.
    let _pin = store.pin(plan.jobs.iter().map(|j| &j.key), &format!("pipeline run {}", a.experiment.display()))?;
    let schedule = Schedule::new(&plan, &store, &a.force);
    let mut backend = factory::open(executor, &plan.run, &store, &plan, &schedule).map_err(|e| match e {
        OpenError::Unavailable(m) => anyhow::Error::new(BadInput(m)),
        other => anyhow::Error::new(other),
    })?;
    store.clean_stale();
    let display = RunDisplay::new(a.quiet || a.json);
    let cached = schedule.cached_count();
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
    for note in backend.notes() {
        display.line(&note);
    }
    let opts = RunOptions { jobs, gpus: a.gpus, fail_fast: a.fail_fast };
    let report = exec::execute(&plan, &store, &schedule, backend.as_mut(), &opts, &display);
    // The view changes now, in one step, with what finished; the pin still holds every key.
    let view = publish_view(&plan, &results, &store, &report, &a.experiment, !a.variant.is_empty());

    let rows = result_rows(&plan, &report);
    let view_path = |r: &ResultRow| -> Option<std::path::PathBuf> {
        let index = view.as_ref().ok()?;
        let e = index.entry(&r.variant, &r.stage).filter(|e| e.key == r.key)?;
        Some(results.view_path(&plan.experiment.name).join(&e.path))
    };
    if a.json {
        let json: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"stage": r.stage, "variant": r.variant, "kind": r.kind, "status": r.status.as_str(), "key": r.key, "seconds": r.seconds, "path": view_path(r)})
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
                    r.key.short().to_string(),
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
        if let Ok(index) = &view {
            print_view(&plan, &results, index, &a.experiment, &mut out)?;
        }
    }
    if let Err(e) = &view {
        eprintln!("error: the results view was not updated: {e}");
    }
    if report.interrupted {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    Ok(if report.failed() || view.is_err() { ExitCode::from(EXIT_STAGE_FAILED) } else { ExitCode::SUCCESS })
}

/// Replaces the experiment's results view with the stages this run finished.
fn publish_view(
    plan: &Plan,
    results: &ResultsDir,
    store: &Store,
    report: &RunReport,
    file: &std::path::Path,
    variants_filtered: bool,
) -> Result<ViewIndex, ViewError> {
    let mut planned = Vec::new();
    let mut finished = Vec::new();
    for vp in &plan.variants {
        for (name, s) in &vp.stages {
            planned.push((vp.variant.name.clone(), name.clone()));
            let idx = plan.job_of(&s.key).expect("every stage has a job");
            if report.outcomes[idx].status.succeeded() {
                finished.push(Finished {
                    variant: vp.variant.name.clone(),
                    stage: name.clone(),
                    kind: s.kind.clone(),
                    key: s.key.clone(),
                    highlights: s.highlights,
                });
            }
        }
    }
    let variants_run: Vec<String> = plan.variants.iter().map(|v| v.variant.name.clone()).collect();
    view::publish(
        results,
        store,
        ViewUpdate {
            experiment: &plan.experiment.name,
            file,
            planned: &planned,
            variants_run: &variants_run,
            other_variants_stay: variants_filtered,
            by_variant: variants_run.iter().any(|v| v != DEFAULT_VARIANT),
            finished,
        },
    )
}

/// Where the results are: the view, and the main files of its stages (of the final stages
/// only, in a sweep).
fn print_view(
    plan: &Plan,
    results: &ResultsDir,
    index: &ViewIndex,
    file: &std::path::Path,
    out: &mut dyn Write,
) -> Result<()> {
    let root = results.view_path(&plan.experiment.name);
    let needed: HashSet<(&str, &str)> = plan
        .variants
        .iter()
        .flat_map(|vp| {
            vp.stages.values().flat_map(move |s| s.needs.iter().map(move |n| (vp.variant.name.as_str(), n.as_str())))
        })
        .collect();
    let mut rows = Vec::new();
    for e in &index.entries {
        if !index.is_latest(e) || (index.by_variant && needed.contains(&(e.variant.as_str(), e.stage.as_str()))) {
            continue;
        }
        for h in &e.highlights {
            let label = if index.by_variant { format!("{} [{}]", e.stage, e.variant) } else { e.stage.clone() };
            rows.push((label, display_path(&root.join(&e.path).join(h)).display().to_string()));
        }
    }
    let width = rows.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
    writeln!(
        out,
        "\nresults: {}/   (pipeline show {} STAGE)",
        display_path(&root).display(),
        display_path(file).display()
    )?;
    for (label, path) in rows {
        writeln!(out, "  {label:<width$}  {path}")?;
    }
    Ok(())
}

struct ResultRow {
    stage: String,
    variant: String,
    kind: String,
    status: Status,
    key: StageKey,
    seconds: f64,
}

fn result_rows(plan: &Plan, report: &RunReport) -> Vec<ResultRow> {
    let mut rows = Vec::new();
    for vp in &plan.variants {
        for (name, s) in &vp.stages {
            let idx = plan.job_of(&s.key).expect("every stage has a job");
            let o = &report.outcomes[idx];
            // A job shared by several variants ran once: its first user shown (a variant left out
            // by `--variant` is not) has it as run, the others as cached.
            let users = &plan.jobs[idx].users;
            let shown = |(v, _): &&(String, String)| plan.variants.iter().any(|p| &p.variant.name == v);
            let first_user = users.iter().find(shown).unwrap_or(&users[0]);
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
                key: s.key.clone(),
                seconds: if status == Status::Ran { o.seconds } else { 0.0 },
            });
        }
    }
    rows
}

/// Final stages may leave a `summary.txt` (e.g. the report's F1 table): printed after the run.
fn print_summaries(plan: &Plan, store: &Store, report: &RunReport, out: &mut dyn Write) -> Result<()> {
    let mut printed = HashSet::new();
    for vp in &plan.variants {
        let needed: HashSet<&String> = vp.stages.values().flat_map(|s| s.needs.iter()).collect();
        for (name, s) in &vp.stages {
            if needed.contains(name) || !printed.insert(s.key.clone()) {
                continue;
            }
            let idx = plan.job_of(&s.key).expect("job");
            if !report.outcomes[idx].status.succeeded() {
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
