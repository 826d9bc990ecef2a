//! Typing a variant's stages: params resolved (replicate seeds applied), `needs` parsed and
//! wired into a DAG checked for cycles.

use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::Value;

use crate::spec::{Experiment, SourceMap, SpecError, Variant, did_you_mean};
use crate::stage::{Registry, Stage};

/// A `needs` entry: a stage of the same variant, or of every variant along `axis` (fan-in).
#[derive(Debug, Clone)]
pub(super) struct Need {
    pub(super) name: String,
    pub(super) axis: Option<String>,
}

impl Need {
    fn parse(entry: &str) -> Need {
        match entry.split_once('@') {
            Some((name, axis)) => Need { name: name.to_string(), axis: Some(axis.to_string()) },
            None => Need { name: entry.to_string(), axis: None },
        }
    }
}

/// One stage typed, before keying.
pub(super) struct TypedStage<'r> {
    pub(super) kind: String,
    pub(super) stage: &'r Arc<dyn Stage>,
    pub(super) params: Value,
    pub(super) needs: Vec<Need>,
    /// Whether `needs` was written (else it is the kind's standard upstream).
    pub(super) explicit_needs: bool,
}

/// A variant's stages typed, in topological order.
pub(super) struct TypedVariant<'r> {
    pub(super) sources: SourceMap,
    pub(super) stages: IndexMap<String, TypedStage<'r>>,
}

pub(super) fn path_of(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

pub(super) fn in_variant(exp: &Experiment, variant: &Variant, msg: String) -> String {
    if exp.variants.len() > 1 { format!("{msg} (variant `{}`)", variant.name) } else { msg }
}

/// Types every stage of a variant (its replicate's seeds applied), wires and checks its DAG.
pub(super) fn type_variant<'r>(
    exp: &Experiment,
    variant: &Variant,
    registry: &'r Registry,
) -> Result<TypedVariant<'r>, SpecError> {
    let (tables, sources) = exp.stage_tables(variant)?;
    let file = &exp.path;

    let mut typed: IndexMap<String, TypedStage> = IndexMap::new();
    for (name, t) in &tables {
        let Some(stage) = registry.get(&t.kind) else {
            let loc =
                sources.value(&path_of(&["stages", name, "kind"])).or_else(|| sources.key(&path_of(&["stages", name])));
            let mut err = SpecError::at(loc, file, format!("unknown stage kind `{}` for [stages.{name}]", t.kind));
            err = match did_you_mean(&t.kind, registry.kinds()) {
                Some(s) => err.with_help(format!("did you mean `{s}`?")),
                None => err.with_help(format!(
                    "the kinds are: {} (set `kind = \"...\"` for a table with another name)",
                    registry.kinds().collect::<Vec<_>>().join(", ")
                )),
            };
            return Err(err);
        };
        let param_error = |e: crate::error::ParamError| {
            let mut p = path_of(&["stages", name]);
            p.extend(e.path.iter().cloned());
            let dotted = if e.path.is_empty() {
                format!("[stages.{name}]")
            } else {
                format!("`stages.{name}.{}`", e.path.join("."))
            };
            let mut err =
                SpecError::at(sources.key(&p), file, in_variant(exp, variant, format!("{dotted}: {}", e.message)));
            err.help = e.help.clone();
            err
        };
        let mut params = stage.resolve(&t.params).map_err(param_error)?;
        if let Some(r) = variant.replicate.filter(|r| *r > 0) {
            params = with_replicate_seeds(stage.as_ref(), &t.params, &params, r).map_err(param_error)?;
        }
        let needs: Vec<Need> = match &t.needs {
            Some(n) => n.iter().map(|e| Need::parse(e)).collect(),
            None => stage.needs().iter().map(|s| Need { name: s.to_string(), axis: None }).collect(),
        };
        if needs.len() < stage.min_needs() {
            let loc = sources
                .value(&path_of(&["stages", name, "needs"]))
                .or_else(|| sources.key(&path_of(&["stages", name])));
            return Err(SpecError::at(
                loc,
                file,
                format!(
                    "stage `{name}` ({}) needs at least {} upstream stage{} in `needs`, and has {}",
                    t.kind,
                    stage.min_needs(),
                    if stage.min_needs() == 1 { "" } else { "s" },
                    needs.len()
                ),
            )
            .with_help(format!(
                "list them, e.g. needs = [\"a\", \"b\"], or needs = [\"a@AXIS\"] for stage `a` in every variant of a swept axis (such as `replicate`) in [stages.{name}]"
            )));
        }
        typed.insert(
            name.clone(),
            TypedStage { kind: t.kind.clone(), stage, params, needs, explicit_needs: t.needs.is_some() },
        );
    }

    // Wire the DAG.
    let mut graph: DiGraph<String, ()> = DiGraph::new();
    let nodes: IndexMap<String, NodeIndex> = typed.keys().map(|n| (n.clone(), graph.add_node(n.clone()))).collect();
    for (name, t) in &typed {
        for need in &t.needs {
            let loc = if t.explicit_needs {
                sources.value(&path_of(&["stages", name, "needs"]))
            } else {
                sources.key(&path_of(&["stages", name]))
            };
            if need.name == *name {
                return Err(SpecError::at(loc, file, format!("stage `{name}` needs itself")));
            }
            if need.axis.as_deref() == Some("") {
                return Err(SpecError::at(
                    loc,
                    file,
                    format!("stage `{name}` needs `{}@`: name the axis after the @", need.name),
                )
                .with_help("e.g. needs = [\"nms@replicate\"]: that stage in every replicate"));
            }
            let Some(&from) = nodes.get(&need.name) else {
                let err = if t.explicit_needs {
                    let e = SpecError::at(
                        loc,
                        file,
                        format!("stage `{name}` needs `{}`, which is not a stage of this experiment", need.name),
                    );
                    match did_you_mean(&need.name, nodes.keys().map(|s| s.as_str())) {
                        Some(s) => e.with_help(format!("did you mean `{s}`?")),
                        None => e.with_help(format!(
                            "the stages are: {}",
                            nodes.keys().cloned().collect::<Vec<_>>().join(", ")
                        )),
                    }
                } else {
                    SpecError::at(
                        loc,
                        file,
                        format!(
                            "stage `{name}` ({}) needs a stage named `{}` (its standard upstream), and there is none",
                            t.kind, need.name
                        ),
                    )
                    .with_help(format!(
                        "add [stages.{}], or list the upstream stages with `needs = [...]` in [stages.{name}]",
                        need.name
                    ))
                };
                return Err(err);
            };
            graph.add_edge(from, nodes[name], ());
        }
    }
    let order = match petgraph::algo::toposort(&graph, None) {
        Ok(order) => order,
        Err(_) => return Err(cycle_error(&graph, &sources, file)),
    };
    let mut stages = IndexMap::new();
    for idx in order {
        let name = graph[idx].clone();
        let t = typed.swap_remove(&name).expect("every node is a typed stage");
        stages.insert(name, t);
    }
    Ok(TypedVariant { sources, stages })
}

/// The params of replicate `r`: each of the kind's seed params offset by `r` (from the written
/// value or the default), typed and validated again.
pub(super) fn with_replicate_seeds(
    stage: &dyn Stage,
    raw: &toml::Table,
    resolved: &Value,
    r: u32,
) -> Result<Value, crate::error::ParamError> {
    let seeds = stage.replicate_seeds();
    if seeds.is_empty() {
        return Ok(resolved.clone());
    }
    let mut raw = raw.clone();
    for seed in seeds {
        let Some(base) = resolved.get(*seed).and_then(Value::as_u64) else {
            return Err(crate::error::ParamError::new(
                &[seed],
                format!("internal: `{seed}` is declared a replicate seed but is not a whole number"),
            ));
        };
        let value = i64::try_from(base.wrapping_add(u64::from(r))).unwrap_or(i64::from(r));
        raw.insert(seed.to_string(), toml::Value::Integer(value));
    }
    stage.resolve(&raw)
}

pub(super) fn cycle_error(graph: &DiGraph<String, ()>, sources: &SourceMap, file: &Path) -> SpecError {
    for scc in petgraph::algo::tarjan_scc(graph) {
        let cyclic = scc.len() > 1 || scc.iter().any(|&n| graph.contains_edge(n, n));
        if !cyclic {
            continue;
        }
        // Walk the cycle in edge order for a readable message.
        let start = *scc.iter().min_by_key(|n| graph[**n].clone()).expect("non-empty");
        let mut names = vec![graph[start].clone()];
        let mut cur = start;
        loop {
            let next = graph.neighbors(cur).find(|n| scc.contains(n)).expect("cycle continues");
            if next == start {
                break;
            }
            names.push(graph[next].clone());
            cur = next;
            if names.len() > scc.len() {
                break;
            }
        }
        names.push(graph[start].clone());
        let first = &names[1];
        let loc = sources.value(&["stages".to_string(), first.clone(), "needs".to_string()]);
        return SpecError::at(loc, file, format!("the stages form a cycle: {}", names.join(" → ")))
            .with_help("a stage cannot (even indirectly) need itself; remove one of these `needs`");
    }
    SpecError::new(file, "the stages form a cycle")
}
