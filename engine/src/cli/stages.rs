//! `pipeline stages [KIND]`: every stage kind with its parameters, types, defaults and docs.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::BadInput;
use crate::progress::table;
use crate::stage::Registry;

#[derive(Args, Debug, Clone)]
pub struct StagesArgs {
    /// Show one kind only.
    pub kind: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn stages(a: StagesArgs, registry: &Registry) -> Result<ExitCode> {
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
