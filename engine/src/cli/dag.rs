//! `pipeline dag`: the stage graph as text, Graphviz dot or Mermaid.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::CacheArgs;
use crate::plan::Plan;
use crate::stage::Registry;
use crate::store::Store;

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

pub(super) fn dag(a: DagArgs, registry: &Registry) -> Result<ExitCode> {
    let store = Store::open(&a.cache.cache_dir)?;
    let plan = Plan::load(&a.experiment, registry, &store, &[], false)?;
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
