//! From an experiment to a plan: every variant's stages typed, wired into a DAG (petgraph),
//! checked for cycles, keyed in topological order, and de-duplicated across variants into jobs
//! (a stage with the same key in several variants runs once).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::Value;

use crate::exec::config::RunConfig;
use crate::filedigest::DigestMemo;
use crate::inputs::ExternalFile;
use crate::key::{ExternalDigest, KeyInputs, OutputNames, StageKey, UpstreamRef};
use crate::spec::{Experiment, Location, SourceMap, SpecError, Variant, did_you_mean};
use crate::stage::{Registry, Resources};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct PlannedStage {
    pub variant: String,
    pub name: String,
    pub kind: String,
    pub key: StageKey,
    pub inputs: KeyInputs,
    /// All resolved params, including those kept out of the key.
    pub params: Value,
    /// Names of the direct upstream stages, in `needs` order.
    pub needs: Vec<String>,
    /// Names of every upstream stage, nearest first.
    pub ancestors: Vec<String>,
    pub external: Vec<ExternalFile>,
    pub resources: Resources,
    pub worker: Option<&'static str>,
    pub location: Option<Location>,
    /// Where each param set in the experiment files is (dotted path inside the stage table →
    /// `file:line:column`), so that a stage can name the line of a param whose value only turns
    /// out wrong at run time ([`crate::StageContext::param_error`]).
    pub param_locations: BTreeMap<String, String>,
    /// Where this stage's relative path params resolve (see [`crate::stage::StageDef::PATH_PARAMS`]).
    pub params_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct VariantPlan {
    pub variant: Variant,
    /// Stages in topological order.
    pub stages: IndexMap<String, PlannedStage>,
}

/// One unit of execution: a unique key.
#[derive(Debug, Clone)]
pub struct Job {
    pub key: StageKey,
    /// The first (variant, stage) that resolved to this key; the others are in `users`.
    pub stage: PlannedStage,
    /// Indices of the jobs this one needs, into `Plan::jobs`.
    pub deps: Vec<usize>,
    /// Every (variant, stage name) whose output this job is.
    pub users: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub experiment: Experiment,
    /// `[run]` and the back-ends' tables, typed.
    pub run: RunConfig,
    pub variants: Vec<VariantPlan>,
    /// Jobs in an order where dependencies come first.
    pub jobs: Vec<Job>,
}

impl Plan {
    /// Loads, checks and plans an experiment file for a store: every table typed (stages,
    /// `[run]`, the back-ends'), input files digested (memoised in the store; `verify` rehashes
    /// them), and, if `variants` names any, only those variants kept.
    pub fn load(
        path: &Path,
        registry: &Registry,
        store: &Store,
        variants: &[String],
        verify: bool,
    ) -> Result<Plan, SpecError> {
        let mut exp = Experiment::load(path)?;
        for v in variants {
            if !exp.variants.iter().any(|x| &x.name == v) {
                let names: Vec<&str> = exp.variants.iter().map(|v| v.name.as_str()).collect();
                let err = SpecError::new(path, format!("no variant `{v}`"));
                return Err(match did_you_mean(v, names.iter().copied()) {
                    Some(s) => err.with_help(format!("did you mean `{s}`?")),
                    None => err.with_help(format!("the variants are: {}", names.join(", "))),
                });
            }
        }
        if !variants.is_empty() {
            exp.variants.retain(|x| variants.contains(&x.name));
        }
        let mut memo = DigestMemo::load(&store.memo_path(), verify);
        let plan = Plan::build(exp, registry, &mut memo)?;
        if let Err(e) = memo.save() {
            tracing::warn!("could not save the input digest memo: {e}");
        }
        Ok(plan)
    }

    pub fn build(experiment: Experiment, registry: &Registry, memo: &mut DigestMemo) -> Result<Plan, SpecError> {
        // [run] and the back-ends' tables first: a misspelt table is reported before anything
        // that depends on it, and on every command, not only when stages are run.
        let run = RunConfig::from_experiment(&experiment, registry.kinds())?;
        let mut variants = Vec::new();
        for variant in &experiment.variants {
            variants.push(plan_variant(&experiment, variant, registry, memo)?);
        }
        let mut jobs: Vec<Job> = Vec::new();
        let mut by_key: HashMap<StageKey, usize> = HashMap::new();
        for vp in &variants {
            for (name, stage) in &vp.stages {
                let user = (vp.variant.name.clone(), name.clone());
                if let Some(&i) = by_key.get(&stage.key) {
                    jobs[i].users.push(user);
                    continue;
                }
                let deps = stage.needs.iter().map(|n| by_key[&vp.stages[n].key]).collect();
                by_key.insert(stage.key.clone(), jobs.len());
                jobs.push(Job { key: stage.key.clone(), stage: stage.clone(), deps, users: vec![user] });
            }
        }
        Ok(Plan { experiment, run, variants, jobs })
    }

    pub fn variant(&self, name: &str) -> Option<&VariantPlan> {
        self.variants.iter().find(|v| v.variant.name == name)
    }

    pub fn job_of(&self, key: &StageKey) -> Option<usize> {
        self.jobs.iter().position(|j| &j.key == key)
    }
}

fn plan_variant(
    exp: &Experiment,
    variant: &Variant,
    registry: &Registry,
    memo: &mut DigestMemo,
) -> Result<VariantPlan, SpecError> {
    let (tables, sources) = exp.stage_tables(variant)?;
    let file = &exp.path;
    let path_of = |parts: &[&str]| -> Vec<String> { parts.iter().map(|s| s.to_string()).collect() };
    let in_variant = |msg: String| {
        if exp.variants.len() > 1 { format!("{msg} (variant `{}`)", variant.name) } else { msg }
    };

    // Type every stage's params.
    struct Typed<'a> {
        kind: &'a str,
        stage: &'a std::sync::Arc<dyn crate::stage::Stage>,
        params: Value,
        needs: Vec<String>,
    }
    let mut typed: IndexMap<String, Typed> = IndexMap::new();
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
        let params = stage.resolve(&t.params).map_err(|e| {
            let mut p = path_of(&["stages", name]);
            p.extend(e.path.iter().cloned());
            let dotted = if e.path.is_empty() {
                format!("[stages.{name}]")
            } else {
                format!("`stages.{name}.{}`", e.path.join("."))
            };
            let mut err = SpecError::at(sources.key(&p), file, in_variant(format!("{dotted}: {}", e.message)));
            err.help = e.help.clone();
            err
        })?;
        let needs = match &t.needs {
            Some(n) => n.clone(),
            None => stage.needs().iter().map(|s| s.to_string()).collect(),
        };
        typed.insert(name.clone(), Typed { kind: &t.kind, stage, params, needs });
    }

    // Wire the DAG.
    let mut graph: DiGraph<String, ()> = DiGraph::new();
    let nodes: IndexMap<String, NodeIndex> = typed.keys().map(|n| (n.clone(), graph.add_node(n.clone()))).collect();
    for (name, t) in &typed {
        for need in &t.needs {
            let explicit = tables[name].needs.is_some();
            let loc = if explicit {
                sources.value(&path_of(&["stages", name, "needs"]))
            } else {
                sources.key(&path_of(&["stages", name]))
            };
            if need == name {
                return Err(SpecError::at(loc, file, format!("stage `{name}` needs itself")));
            }
            let Some(&from) = nodes.get(need) else {
                let err = if explicit {
                    let e = SpecError::at(
                        loc,
                        file,
                        format!("stage `{name}` needs `{need}`, which is not a stage of this experiment"),
                    );
                    match did_you_mean(need, nodes.keys().map(|s| s.as_str())) {
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
                        format!("stage `{name}` ({}) needs a stage named `{need}` (its standard upstream), and there is none", t.kind),
                    )
                    .with_help(format!("add [stages.{need}], or list the upstream stages with `needs = [...]` in [stages.{name}]"))
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

    // Key in topological order.
    let mut stages: IndexMap<String, PlannedStage> = IndexMap::new();
    for idx in order {
        let name = graph[idx].clone();
        let t = &typed[&name];
        // Relative paths resolve against the file that wrote them, so a base experiment keeps
        // its data and weights paths wherever the file extending it lives.
        let params_dir = t
            .stage
            .path_params()
            .iter()
            .filter(|p| t.params.get(**p).is_some_and(|v| !v.is_null()))
            .find_map(|p| sources.exact_key(&path_of(&["stages", &name, p])))
            .map(|loc| loc.file.parent().map(Path::to_path_buf).unwrap_or_default())
            .unwrap_or_else(|| exp.dir.clone());
        let inputs_list = t.stage.external_inputs(&t.params, &params_dir).map_err(|e| {
            let mut p = path_of(&["stages", &name]);
            p.extend(e.path.iter().cloned());
            let mut err = SpecError::at(sources.key(&p), file, in_variant(format!("stage `{name}`: {}", e.message)));
            err.help = e.help.clone();
            err
        })?;
        let paths: Vec<_> = inputs_list.iter().map(|i| i.path.clone()).collect();
        let digests = memo.digests(&paths).map_err(|e| {
            SpecError::at(
                sources.key(&path_of(&["stages", &name])),
                file,
                format!("stage `{name}`: cannot read input {}", e),
            )
        })?;
        let external: Vec<ExternalFile> = inputs_list
            .into_iter()
            .zip(digests)
            .map(|(i, digest)| ExternalFile { name: i.name, path: absolute(&i.path), digest })
            .collect();
        let upstream: Vec<UpstreamRef> = t
            .needs
            .iter()
            .map(|n| UpstreamRef { name: n.clone(), kind: stages[n].kind.clone(), key: stages[n].key.clone() })
            .collect();
        let mut key_params = t.params.clone();
        if let Some(map) = key_params.as_object_mut() {
            for k in t.stage.non_key_params() {
                map.remove(*k);
            }
        }
        // Names reach the output only of kinds that declare it; then they are in the key.
        let names = t.stage.names_in_output().then(|| OutputNames {
            experiment: exp.name.clone(),
            variant: variant.name.clone(),
            stage: name.clone(),
        });
        let inputs = KeyInputs {
            kind: t.kind.to_string(),
            version: t.stage.version(),
            params: key_params,
            upstream,
            external: external
                .iter()
                .map(|e| ExternalDigest { name: e.name.clone(), digest: e.digest.clone() })
                .collect(),
            names,
        };
        // Ancestors, nearest first (breadth-first over needs).
        let mut ancestors: Vec<String> = Vec::new();
        let mut frontier = t.needs.clone();
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for n in frontier {
                if !ancestors.contains(&n) {
                    ancestors.push(n.clone());
                    next.extend(stages[&n].needs.iter().cloned());
                }
            }
            frontier = next;
        }
        stages.insert(
            name.clone(),
            PlannedStage {
                variant: variant.name.clone(),
                name: name.clone(),
                kind: t.kind.to_string(),
                key: inputs.key(),
                resources: t.stage.resources(&t.params),
                worker: t.stage.worker(),
                inputs,
                params: t.params.clone(),
                needs: t.needs.clone(),
                ancestors,
                external,
                location: sources.key(&path_of(&["stages", &name])).cloned(),
                param_locations: sources
                    .keys_under(&path_of(&["stages", &name]))
                    .into_iter()
                    .map(|(k, l)| (k, l.to_string()))
                    .collect(),
                params_dir,
            },
        );
    }
    Ok(VariantPlan { variant: variant.clone(), stages })
}

fn absolute(p: &Path) -> std::path::PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn cycle_error(graph: &DiGraph<String, ()>, sources: &SourceMap, file: &Path) -> SpecError {
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
