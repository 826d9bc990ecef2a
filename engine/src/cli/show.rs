//! `pipeline show EXP STAGE`: where the last run's output of a stage is (its path in the results
//! view), its files with sizes, its key and when it was made; `--path` prints only the path.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::{BadInput, CacheArgs, ResultsArgs};
use crate::plan::Plan;
use crate::progress::{display_path, human_bytes, seconds, table, utc_time};
use crate::record::Record;
use crate::spec::did_you_mean;
use crate::stage::Registry;
use crate::store::Store;
use crate::view::{ResultsDir, ViewEntry, ViewIndex};

#[derive(Args, Debug, Clone)]
pub struct ShowArgs {
    /// The experiment file.
    pub experiment: PathBuf,
    /// The stage (its table name, e.g. `report`, `train`).
    pub stage: String,
    /// The variant, for an experiment with a sweep.
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
    /// Print only the path (for scripts).
    #[arg(long, conflicts_with = "json")]
    pub path: bool,
    /// One JSON object: path, entry, key, made, files.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub results: ResultsArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// A stage's entry in an experiment's results view, found from the experiment file.
#[derive(Debug, Clone)]
pub struct ShownStage {
    pub plan: Plan,
    pub variant: String,
    pub stage: String,
    pub index: ViewIndex,
    pub entry: ViewEntry,
    /// The entry's path through the view (`…/results/quickstart/report`).
    pub path: PathBuf,
    /// The store the view points into.
    pub store: Store,
    /// Whether the experiment file as it is now gives the stage the same key (`None` while
    /// one of its inputs is missing).
    pub current: Option<bool>,
}

/// Finds `stage` (of `variant`) of the experiment file in its results view under `results`.
/// Unknown stages and variants, and stages that never finished, are [`BadInput`] errors that
/// say what to do.
pub fn find_in_view(
    experiment: &Path,
    stage: &str,
    variant: Option<&str>,
    results: &Path,
    cache: &Path,
    registry: &Registry,
) -> Result<ShownStage> {
    let memo_store = Store::open(cache)?;
    let variants: Vec<String> = variant.map(|v| vec![v.to_string()]).unwrap_or_default();
    let plan = Plan::load_for_planning(experiment, registry, &memo_store, &variants, false)?;
    if plan.variants.len() > 1 {
        let names: Vec<&str> = plan.variants.iter().map(|v| v.variant.name.as_str()).collect();
        return Err(BadInput(format!(
            "{} has {} variants; choose one with --variant: {}",
            experiment.display(),
            names.len(),
            names.join(", ")
        ))
        .into());
    }
    let vp = &plan.variants[0];
    let Some(planned) = vp.stages.get(stage) else {
        let names: Vec<&str> = vp.stages.keys().map(String::as_str).collect();
        let help = match did_you_mean(stage, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("the stages are: {}", names.join(", ")),
        };
        return Err(BadInput(format!("no stage `{stage}` in {}: {help}", experiment.display())).into());
    };
    let not_run = || BadInput(format!("not run yet: run `pipeline run {}`", experiment.display()));
    let Some(dir) = ResultsDir::existing(results).map_err(|e| BadInput(e.to_string()))? else {
        return Err(not_run().into());
    };
    let Some(index) = dir.read(&plan.experiment.name)? else { return Err(not_run().into()) };
    let Some(entry) = index.entry(&vp.variant.name, stage).cloned() else {
        return Err(BadInput(format!(
            "not run yet: `{stage}` has no output in the results view {}; run `pipeline run {}`",
            display_path(&dir.view_path(&plan.experiment.name)).display(),
            experiment.display()
        ))
        .into());
    };
    let store = Store::open(&index.store)?;
    let current = planned.blocked.is_none().then(|| planned.key == entry.key);
    let path = dir.view_path(&plan.experiment.name).join(&entry.path);
    Ok(ShownStage {
        variant: vp.variant.name.clone(),
        stage: stage.to_string(),
        index,
        entry,
        path,
        store,
        current,
        plan,
    })
}

pub(super) fn show(a: ShowArgs, registry: &Registry) -> Result<ExitCode> {
    let found = find_in_view(
        &a.experiment,
        &a.stage,
        a.variant.as_deref(),
        &a.results.results_dir,
        &a.cache.cache_dir,
        registry,
    )?;
    if a.path {
        println!("{}", found.path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let record: Option<Record> = found.store.record(&found.entry.key)?;
    let files: Vec<(String, u64)> =
        record.iter().flat_map(|r| r.outputs.iter().map(|o| (o.path.clone(), o.bytes))).collect();
    let e = &found.entry;
    if a.json {
        let json = serde_json::json!({
            "experiment": found.plan.experiment.name, "variant": found.variant, "stage": found.stage,
            "kind": e.kind, "path": found.path, "entry": found.store.out_dir(&e.key), "key": e.key,
            "made_unix": e.made_unix, "latest_run": found.index.is_latest(e), "current": found.current,
            "files": files.iter().map(|(p, b)| serde_json::json!({"path": p, "bytes": b})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    let variant = if found.index.by_variant { format!(" [{}]", found.variant) } else { String::new() };
    println!("{}{variant} ({}) of {}", found.stage, e.kind, found.plan.experiment.name);
    let mut facts = vec![
        vec!["path".to_string(), display_path(&found.path).display().to_string()],
        vec!["entry".to_string(), found.store.out_dir(&e.key).display().to_string()],
        vec!["key".to_string(), e.key.to_string()],
    ];
    let took = record.as_ref().map(|r| format!(" (took {} on {})", seconds(r.seconds), r.host)).unwrap_or_default();
    facts.push(vec!["made".to_string(), format!("{}{took}", utc_time(e.made_unix))]);
    let total: u64 = files.iter().map(|(_, b)| b).sum();
    facts.push(vec!["files".to_string(), format!("{} ({})", files.len(), human_bytes(total))]);
    for row in facts {
        println!("  {:<6} {}", row[0], row[1]);
    }
    if !files.is_empty() {
        let rows: Vec<Vec<String>> = files.iter().map(|(p, b)| vec![p.clone(), human_bytes(*b)]).collect();
        println!("\n{}", table(&["file", "size"], &rows));
    }
    if !found.index.is_latest(e) {
        println!(
            "\nnote: the latest run ({}) did not finish `{}`; this is the output of the run of {}",
            utc_time(found.index.updated_unix),
            found.stage,
            utc_time(e.run_unix)
        );
    }
    if found.current == Some(false) {
        println!(
            "\nnote: {} has changed since this output was made (`pipeline status {0}` says why); `pipeline run` replaces it",
            a.experiment.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
