//! `pipeline gc`: removes what no kept experiment reaches, never what a running pipeline uses
//! (the rules are the store's, see `store/gc.rs`), and says how big the cache is.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::CacheArgs;
use crate::plan::Plan;
use crate::progress::{human_bytes, table};
use crate::stage::Registry;
use crate::store::{Store, Usage};

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

pub(super) fn gc(a: GcArgs, registry: &Registry) -> Result<ExitCode> {
    let store = Store::open(&a.cache.cache_dir)?;
    let keep: HashSet<_> = if a.keep.is_empty() {
        store.latest_keys()
    } else {
        let mut keep = HashSet::new();
        for exp in &a.keep {
            let plan = Plan::load(exp, registry, &store, &[], false)?;
            keep.extend(plan.jobs.iter().map(|j| j.key.clone()));
        }
        keep
    };
    let report = store.gc(&keep, a.dry_run)?;
    let rows: Vec<Vec<String>> =
        report.removed.iter().map(|r| vec![r.key.short().to_string(), human_bytes(r.bytes), r.what.clone()]).collect();
    if !rows.is_empty() {
        println!("{}", table(&["key", "size", "experiment / variant / stage"], &rows));
    }
    let (entries, other): (Vec<_>, Vec<_>) = report.removed.iter().partition(|r| r.entry);
    let size = |v: &[&crate::store::Removal]| human_bytes(v.iter().map(|r| r.bytes).sum());
    let mut line = format!(
        "{} {} entr{} ({})",
        if a.dry_run { "would remove" } else { "removed" },
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        size(&entries)
    );
    if !other.is_empty() {
        line.push_str(&format!(
            " and {} unfinished or stale item{} ({})",
            other.len(),
            if other.len() == 1 { "" } else { "s" },
            size(&other)
        ));
    }
    line.push_str(&format!(
        "; kept {} entr{} ({})",
        report.kept_entries,
        if report.kept_entries == 1 { "y" } else { "ies" },
        human_bytes(report.kept_bytes)
    ));
    println!("{line}");
    if !report.in_use.is_empty() {
        println!(
            "kept {} more entr{} in use by running pipelines: {}",
            report.in_use.len(),
            if report.in_use.len() == 1 { "y" } else { "ies" },
            if report.holders.is_empty() { "stages running now".to_string() } else { report.holders.join("; ") }
        );
    }
    match &report.after {
        Some(after) => println!(
            "cache {}: {} on disk, was {} ({})",
            store.root().display(),
            human_bytes(after.total()),
            human_bytes(report.before.total()),
            areas(after)
        ),
        None => println!(
            "cache {}: {} on disk ({})",
            store.root().display(),
            human_bytes(report.before.total()),
            areas(&report.before)
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn areas(u: &Usage) -> String {
    u.areas
        .iter()
        .filter(|a| a.bytes > 0)
        .map(|a| format!("{} {}", a.name, human_bytes(a.bytes)))
        .collect::<Vec<_>>()
        .join(", ")
}
