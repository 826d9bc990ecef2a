//! `pipeline explain EXP STAGE`: a stage's key inputs now, field by field against its last
//! recorded run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::{BadInput, CacheArgs};
use crate::explain::{self, Reason};
use crate::plan::Plan;
use crate::stage::Registry;
use crate::store::Store;

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

pub(super) fn explain(a: ExplainArgs, registry: &Registry) -> Result<ExitCode> {
    let store = Store::open(&a.cache.cache_dir)?;
    let variants: Vec<String> = a.variant.iter().cloned().collect();
    let plan = Plan::load(&a.experiment, registry, &store, &variants, false)?;
    let mut found = false;
    for vp in &plan.variants {
        let Some(s) = vp.stages.get(&a.stage) else { continue };
        found = true;
        let cached = store.has(&s.key);
        println!("stage `{}` (kind {}, version {}), variant `{}`", s.name, s.kind, s.inputs.version, vp.variant.name);
        println!("  key now:  {}  ({})", s.key, if cached { "in the cache" } else { "not in the cache" });
        match store.last_run(&plan.experiment.name, &vp.variant.name, &s.name) {
            Ok(None) => println!("  last run: none recorded for this stage name"),
            Err(e) => println!("  last run: its record cannot be read ({e}); the next run rewrites it"),
            Ok(Some(last)) => {
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
                            Reason::UpstreamChanged { name, old, new } => println!(
                                "    upstream `{name}` changed {} → {}",
                                old.as_ref().map(|k| k.short()).unwrap_or("(none)"),
                                new.short()
                            ),
                            Reason::InputChanged { name } => {
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
