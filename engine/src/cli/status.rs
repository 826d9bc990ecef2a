//! `pipeline status` (and `run --dry-run`): each stage cached or to run, and why; jobs that a
//! back-end still has queued or running for it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::CacheArgs;
use crate::exec::{Schedule, factory};
use crate::explain;
use crate::plan::Plan;
use crate::progress::table;
use crate::stage::Registry;
use crate::store::Store;

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

pub(super) fn status(a: StatusArgs, registry: &Registry) -> Result<ExitCode> {
    let store = Store::open(&a.cache.cache_dir)?;
    let plan = Plan::load(&a.experiment, registry, &store, &[], a.verify)?;
    print(&plan, &store, &Schedule::new(&plan, &store, &[]), a.json)
}

/// Prints what `schedule` will run of `plan`, and why.
pub(super) fn print(plan: &Plan, store: &Store, schedule: &Schedule, json: bool) -> Result<ExitCode> {
    let mut rows = Vec::new();
    let mut out_json = Vec::new();
    // Jobs a back-end still knows for the stages to run (one query for all of them).
    let keys: Vec<_> = schedule.to_run().map(|i| &plan.jobs[i].key).collect();
    let jobs = factory::job_statuses(store, &keys);
    for vp in &plan.variants {
        for (name, s) in &vp.stages {
            let idx = plan.job_of(&s.key).expect("every stage has a job");
            let cached = !schedule.runs(idx);
            let reasons = if schedule.is_forced(idx) {
                vec![explain::Reason::Forced]
            } else {
                match store.last_run(&plan.experiment.name, &vp.variant.name, name) {
                    Ok(last) => explain::reasons(&s.inputs, last.as_ref(), cached),
                    Err(e) if !cached => vec![explain::Reason::RecordUnreadable { message: e.to_string() }],
                    Err(_) => Vec::new(),
                }
            };
            let mut why: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
            let job = if cached { None } else { jobs.get(&s.key) };
            let (state, json_state) = match job {
                Some(j) if j.queued => ("queued", "queued"),
                Some(j) if j.live => ("running", "running"),
                _ if cached => ("cached", "cached"),
                _ => ("will run", "run"),
            };
            if let Some(j) = job {
                why.insert(0, if j.live { j.description.clone() } else { format!("last {}", j.description) });
            }
            let mut entry = serde_json::json!({
                "stage": name, "variant": vp.variant.name, "kind": s.kind, "status": json_state,
                "key": s.key.as_str(), "reasons": why,
            });
            if let Some(j) = job {
                entry[format!("{}_job", j.backend)] = serde_json::json!({"id": j.job_id, "state": j.state});
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
