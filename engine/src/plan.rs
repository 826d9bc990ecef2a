//! From an experiment to a plan: every variant's stages typed, wired into a DAG (petgraph),
//! checked for cycles, keyed in topological order, and de-duplicated across variants into jobs
//! (a stage with the same key in several variants runs once).
//!
//! A `needs` entry `STAGE@AXIS` is a fan-in across variants, as Snakemake's `expand`: the stage
//! `STAGE` in every variant that agrees with this one on all swept keys but `AXIS` (a swept key,
//! its short name, `replicate` or `variant`), in the experiment's order. The stage that fans in
//! is then the same in all those variants (one key, run once), and its key holds every member's:
//! adding a replicate reruns the new member and the stages that fan it in, nothing else. Because
//! members live in other variants, keys are computed in passes over all variants until every
//! stage is keyed; the sweep cannot change `needs`, so a cycle across variants is impossible.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::Value;

use crate::exec::config::RunConfig;
use crate::filedigest::DigestMemo;
use crate::inputs::ExternalFile;
use crate::key::{ExternalDigest, KeyInputs, OutputNames, StageKey, UpstreamRef};
use crate::spec::{Experiment, Location, SourceMap, SpecError, Variant, did_you_mean};
use crate::stage::{Registry, Resources, Stage};
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
    /// Names of the direct upstream stages, in `needs` order (a fan-in `STAGE@AXIS` by its
    /// stage name).
    pub needs: Vec<String>,
    /// The direct upstream stages as (variant, stage name), in `needs` order, a fan-in expanded
    /// to every member in the order of its axis: what the stage reads and its key holds.
    pub upstream: Vec<(String, String)>,
    /// Names of every upstream stage, nearest first.
    pub ancestors: Vec<String>,
    pub external: Vec<ExternalFile>,
    pub resources: Resources,
    pub worker: Option<&'static str>,
    /// The kind's main output files ([`crate::stage::StageDef::HIGHLIGHTS`]).
    pub highlights: &'static [&'static str],
    pub location: Option<Location>,
    /// Where each param set in the experiment files is (dotted path inside the stage table →
    /// `file:line:column`), so that a stage can name the line of a param whose value only turns
    /// out wrong at run time ([`crate::StageContext::param_error`]).
    pub param_locations: BTreeMap<String, String>,
    /// Where this stage's relative path params resolve (see [`crate::stage::StageDef::PATH_PARAMS`]).
    pub params_dir: PathBuf,
    /// Why the stage cannot run yet; only plans made with [`MissingInputs::Allow`] have any,
    /// and their keys are then placeholders that no store holds.
    pub blocked: Option<Blocked>,
}

/// What keeps a planned stage from running: its data is not there yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// One of its external input files does not exist (e.g. a dataset not downloaded yet).
    InputMissing(PathBuf),
    /// An upstream stage (named) is blocked by a missing input.
    WaitingFor(String),
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocked::InputMissing(p) => write!(f, "input missing: {}", crate::progress::display_path(p).display()),
            Blocked::WaitingFor(stage) => write!(f, "waiting for `{stage}`, whose input is missing"),
        }
    }
}

/// Whether a plan may be made while input files are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingInputs {
    /// A missing input is an error naming it (what `run` needs).
    Refuse,
    /// Stages with missing inputs and their descendants are marked [`Blocked`] (what `dag` and
    /// `status` need to show an experiment before its data is downloaded).
    Allow,
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
        Plan::load_with(path, registry, store, variants, verify, MissingInputs::Refuse)
    }

    /// [`Plan::load`] that plans stages whose input files are missing as [`Blocked`].
    pub fn load_for_planning(
        path: &Path,
        registry: &Registry,
        store: &Store,
        variants: &[String],
        verify: bool,
    ) -> Result<Plan, SpecError> {
        Plan::load_with(path, registry, store, variants, verify, MissingInputs::Allow)
    }

    fn load_with(
        path: &Path,
        registry: &Registry,
        store: &Store,
        variants: &[String],
        verify: bool,
        missing: MissingInputs,
    ) -> Result<Plan, SpecError> {
        let exp = Experiment::load(path)?;
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
        let mut memo = DigestMemo::load(&store.memo_path(), verify);
        let mut plan = Plan::build_with(exp, registry, &mut memo, missing)?;
        if !variants.is_empty() {
            plan = plan.keep_variants(variants);
        }
        if let Err(e) = memo.save() {
            tracing::warn!("could not save the input digest memo: {e}");
        }
        Ok(plan)
    }

    pub fn build(experiment: Experiment, registry: &Registry, memo: &mut DigestMemo) -> Result<Plan, SpecError> {
        Plan::build_with(experiment, registry, memo, MissingInputs::Refuse)
    }

    pub fn build_with(
        experiment: Experiment,
        registry: &Registry,
        memo: &mut DigestMemo,
        missing: MissingInputs,
    ) -> Result<Plan, SpecError> {
        // [run] and the back-ends' tables first: a misspelt table is reported before anything
        // that depends on it, and on every command, not only when stages are run.
        let run = RunConfig::from_experiment(&experiment, registry.kinds())?;
        let typed: Vec<TypedVariant> =
            experiment.variants.iter().map(|v| type_variant(&experiment, v, registry)).collect::<Result<_, _>>()?;
        let members = fan_in_members(&experiment, &typed)?;
        let (planned, order) = key_all(&experiment, &typed, &members, memo, missing)?;
        let variants: Vec<VariantPlan> = experiment
            .variants
            .iter()
            .zip(planned)
            .map(|(v, stages)| VariantPlan { variant: v.clone(), stages })
            .collect();
        // Jobs in the order stages were keyed: every stage after all it reads.
        let index: HashMap<&str, usize> =
            variants.iter().enumerate().map(|(i, v)| (v.variant.name.as_str(), i)).collect();
        let mut jobs: Vec<Job> = Vec::new();
        let mut by_key: HashMap<StageKey, usize> = HashMap::new();
        for (vi, name) in order {
            let vp = &variants[vi];
            let stage = &vp.stages[&name];
            let user = (vp.variant.name.clone(), name.clone());
            if let Some(&i) = by_key.get(&stage.key) {
                jobs[i].users.push(user);
                continue;
            }
            let mut deps: Vec<usize> =
                stage.upstream.iter().map(|(v, n)| by_key[&variants[index[v.as_str()]].stages[n].key]).collect();
            deps.dedup();
            by_key.insert(stage.key.clone(), jobs.len());
            jobs.push(Job { key: stage.key.clone(), stage: stage.clone(), deps, users: vec![user] });
        }
        // A job stands for its first user in the experiment's order (a fan-in is keyed once its
        // last member is, in a later variant, but it is the first variant's stage).
        for job in &mut jobs {
            job.users.sort_by_key(|(v, _)| index[v.as_str()]);
            let (v, n) = &job.users[0];
            job.stage = variants[index[v.as_str()]].stages[n].clone();
        }
        Ok(Plan { experiment, run, variants, jobs })
    }

    /// Keeps only the named variants and the jobs they reach (their fan-in members in other
    /// variants included).
    fn keep_variants(mut self, names: &[String]) -> Plan {
        self.variants.retain(|v| names.contains(&v.variant.name));
        let mut keep = vec![false; self.jobs.len()];
        let mut stack: Vec<usize> = self
            .variants
            .iter()
            .flat_map(|v| v.stages.values())
            .filter_map(|s| self.jobs.iter().position(|j| j.key == s.key))
            .collect();
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut keep[i], true) {
                stack.extend(self.jobs[i].deps.iter().copied());
            }
        }
        let mut new_index = vec![usize::MAX; self.jobs.len()];
        let mut jobs = Vec::new();
        for (i, mut job) in std::mem::take(&mut self.jobs).into_iter().enumerate() {
            if keep[i] {
                new_index[i] = jobs.len();
                job.deps = job.deps.iter().map(|&d| new_index[d]).collect();
                jobs.push(job);
            }
        }
        self.jobs = jobs;
        self
    }

    pub fn variant(&self, name: &str) -> Option<&VariantPlan> {
        self.variants.iter().find(|v| v.variant.name == name)
    }

    pub fn job_of(&self, key: &StageKey) -> Option<usize> {
        self.jobs.iter().position(|j| &j.key == key)
    }

    /// Whether some stage waits for a missing input (only with [`MissingInputs::Allow`]).
    pub fn is_blocked(&self) -> bool {
        self.variants.iter().any(|v| v.stages.values().any(|s| s.blocked.is_some()))
    }
}

/// A `needs` entry: a stage of the same variant, or of every variant along `axis` (fan-in).
#[derive(Debug, Clone)]
struct Need {
    name: String,
    axis: Option<String>,
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
struct TypedStage<'r> {
    kind: String,
    stage: &'r Arc<dyn Stage>,
    params: Value,
    needs: Vec<Need>,
    /// Whether `needs` was written (else it is the kind's standard upstream).
    explicit_needs: bool,
}

/// A variant's stages typed, in topological order.
struct TypedVariant<'r> {
    sources: SourceMap,
    stages: IndexMap<String, TypedStage<'r>>,
}

fn path_of(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn in_variant(exp: &Experiment, variant: &Variant, msg: String) -> String {
    if exp.variants.len() > 1 { format!("{msg} (variant `{}`)", variant.name) } else { msg }
}

/// Types every stage of a variant (its replicate's seeds applied), wires and checks its DAG.
fn type_variant<'r>(
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
fn with_replicate_seeds(
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

/// For every variant, stage and fan-in need (`STAGE@AXIS`), the indices of the member variants:
/// those that agree with the variant on every swept key but the axis, in experiment order.
type Members = Vec<IndexMap<String, Vec<Option<Vec<usize>>>>>;

fn fan_in_members(exp: &Experiment, typed: &[TypedVariant]) -> Result<Members, SpecError> {
    let keys: Vec<String> =
        exp.variants.first().map(|v| v.swept.iter().map(|s| s.key.clone()).collect()).unwrap_or_default();
    let mut out: Members = Vec::new();
    for (vi, tv) in typed.iter().enumerate() {
        let mut of_variant = IndexMap::new();
        for (name, t) in &tv.stages {
            let mut per_need = Vec::new();
            for need in &t.needs {
                let Some(axis) = &need.axis else {
                    per_need.push(None);
                    continue;
                };
                let short = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
                let matching: Vec<&String> = keys
                    .iter()
                    .filter(|k| *k == axis)
                    .chain(keys.iter().filter(|k| *k != axis && short(k) == *axis))
                    .collect();
                let Some(key) = matching.first().copied() else {
                    let loc = tv.sources.value(&path_of(&["stages", name, "needs"]));
                    let axes: Vec<String> = keys.iter().map(|k| short(k)).collect();
                    let help = if axes.is_empty() {
                        "the experiment sweeps nothing: add a [sweep] (e.g. replicates = 3) or list the stages by name"
                            .to_string()
                    } else {
                        format!("the swept axes are: {}", axes.join(", "))
                    };
                    return Err(SpecError::at(
                        loc,
                        &exp.path,
                        format!(
                            "stage `{name}` needs `{}@{axis}`, but `{axis}` is not a swept axis of this experiment",
                            need.name
                        ),
                    )
                    .with_help(help));
                };
                let me = &exp.variants[vi];
                let members: Vec<usize> = exp
                    .variants
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.swept.iter().all(|s| &s.key == key || me.value_of(&s.key) == Some(&s.value)))
                    .map(|(i, _)| i)
                    .collect();
                per_need.push(Some(members));
            }
            of_variant.insert(name.clone(), per_need);
        }
        out.push(of_variant);
    }
    Ok(out)
}

/// Keys every stage of every variant: in passes, each stage once all it reads is keyed. Returns
/// the planned stages per variant (in topological order) and the global order they were keyed in.
#[allow(clippy::type_complexity)]
fn key_all(
    exp: &Experiment,
    typed: &[TypedVariant],
    members: &Members,
    memo: &mut DigestMemo,
    missing: MissingInputs,
) -> Result<(Vec<IndexMap<String, PlannedStage>>, Vec<(usize, String)>), SpecError> {
    let n = typed.len();
    let mut planned: Vec<IndexMap<String, PlannedStage>> = (0..n).map(|_| IndexMap::new()).collect();
    let mut order: Vec<(usize, String)> = Vec::new();
    let total: usize = typed.iter().map(|t| t.stages.len()).sum();
    while order.len() < total {
        let before = order.len();
        for vi in 0..n {
            for (name, t) in &typed[vi].stages {
                if planned[vi].contains_key(name) {
                    continue;
                }
                let refs: Vec<(usize, String)> = t
                    .needs
                    .iter()
                    .zip(&members[vi][name])
                    .flat_map(|(need, m)| match m {
                        None => vec![(vi, need.name.clone())],
                        Some(ms) => ms.iter().map(|&j| (j, need.name.clone())).collect(),
                    })
                    .collect();
                if !refs.iter().all(|(j, m)| planned[*j].contains_key(m)) {
                    continue;
                }
                let stage = key_stage(exp, vi, &typed[vi], name, t, &refs, &planned, memo, missing)?;
                planned[vi].insert(name.clone(), stage);
                order.push((vi, name.clone()));
            }
        }
        assert!(order.len() > before, "internal: a stage waits for an upstream that can never be keyed");
    }
    // Each variant's stages in its topological order, whatever pass keyed them.
    let planned = planned
        .into_iter()
        .zip(typed)
        .map(|(mut p, t)| t.stages.keys().map(|name| (name.clone(), p.swap_remove(name).expect("keyed"))).collect())
        .collect();
    Ok((planned, order))
}

/// The key and everything else the plan knows of one stage, its upstream already keyed.
#[allow(clippy::too_many_arguments)]
fn key_stage(
    exp: &Experiment,
    vi: usize,
    tv: &TypedVariant,
    name: &str,
    t: &TypedStage,
    refs: &[(usize, String)],
    planned: &[IndexMap<String, PlannedStage>],
    memo: &mut DigestMemo,
    missing: MissingInputs,
) -> Result<PlannedStage, SpecError> {
    let file = &exp.path;
    let sources = &tv.sources;
    let variant = &exp.variants[vi];
    // Relative paths resolve against the file that wrote them, so a base experiment keeps its
    // data and weights paths wherever the file extending it lives.
    let params_dir = t
        .stage
        .path_params()
        .iter()
        .filter(|p| t.params.get(**p).is_some_and(|v| !v.is_null()))
        .find_map(|p| sources.exact_key(&path_of(&["stages", name, p])))
        .map(|loc| loc.file.parent().map(Path::to_path_buf).unwrap_or_default())
        .unwrap_or_else(|| exp.dir.clone());
    // A missing input of its own says more (what to download) than waiting for upstream.
    let mut blocked = None;
    let inputs_list = match t.stage.external_inputs(&t.params, &params_dir) {
        Ok(list) => list,
        Err(e) if missing == MissingInputs::Allow && e.missing_input.is_some() => {
            blocked = e.missing_input.map(Blocked::InputMissing);
            Vec::new()
        }
        Err(e) => {
            let mut p = path_of(&["stages", name]);
            p.extend(e.path.iter().cloned());
            let mut err = SpecError::at(
                sources.key(&p),
                file,
                in_variant(exp, variant, format!("stage `{name}`: {}", e.message)),
            );
            err.help = e.help.clone();
            return Err(err);
        }
    };
    let inputs_list: Vec<_> = if missing == MissingInputs::Allow {
        // Listed files that are not there block the stage; its key is then a placeholder.
        let (present, absent): (Vec<_>, Vec<_>) = inputs_list.into_iter().partition(|i| i.path.exists());
        if let Some(first) = absent.first() {
            blocked = blocked.or(Some(Blocked::InputMissing(first.path.clone())));
        }
        present
    } else {
        inputs_list
    };
    blocked = blocked.or_else(|| {
        refs.iter().find_map(|(j, n)| match &planned[*j][n].blocked {
            Some(Blocked::InputMissing(_)) => Some(Blocked::WaitingFor(n.clone())),
            Some(waiting) => Some(waiting.clone()),
            None => None,
        })
    });
    let paths: Vec<_> = inputs_list.iter().map(|i| i.path.clone()).collect();
    let digests = memo.digests(&paths).map_err(|e| {
        SpecError::at(
            sources.key(&path_of(&["stages", name])),
            file,
            format!("stage `{name}`: cannot read input {}", e),
        )
    })?;
    let external: Vec<ExternalFile> = inputs_list
        .into_iter()
        .zip(digests)
        .map(|(i, digest)| ExternalFile { name: i.name, path: absolute(&i.path), digest })
        .collect();
    let upstream: Vec<UpstreamRef> = refs
        .iter()
        .map(|(j, n)| {
            let u = &planned[*j][n];
            UpstreamRef { name: n.clone(), kind: u.kind.clone(), key: u.key.clone() }
        })
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
        stage: name.to_string(),
    });
    let mut inputs = KeyInputs {
        kind: t.kind.clone(),
        version: t.stage.version(),
        params: key_params,
        upstream,
        external: external.iter().map(|e| ExternalDigest { name: e.name.clone(), digest: e.digest.clone() }).collect(),
        names,
    };
    if let Some(Blocked::InputMissing(path)) = &blocked {
        // Not a digest any file can have: no store holds this key, nothing runs under it.
        inputs.external.push(ExternalDigest { name: format!("missing:{}", path.display()), digest: "missing".into() });
    }
    let needs: Vec<String> = t.needs.iter().map(|n| n.name.clone()).collect();
    // Ancestors, nearest first (breadth-first over needs, in this variant: a fan-in's own member
    // stands for all of them).
    let mut ancestors: Vec<String> = Vec::new();
    let mut frontier = needs.clone();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for n in frontier {
            if !ancestors.contains(&n) {
                ancestors.push(n.clone());
                next.extend(planned[vi][&n].needs.iter().cloned());
            }
        }
        frontier = next;
    }
    Ok(PlannedStage {
        variant: variant.name.clone(),
        name: name.to_string(),
        kind: t.kind.clone(),
        key: inputs.key(),
        resources: t.stage.resources(&t.params),
        worker: t.stage.worker(),
        highlights: t.stage.highlights(),
        inputs,
        params: t.params.clone(),
        needs,
        upstream: refs.iter().map(|(j, n)| (exp.variants[*j].name.clone(), n.clone())).collect(),
        ancestors,
        external,
        location: sources.key(&path_of(&["stages", name])).cloned(),
        param_locations: sources
            .keys_under(&path_of(&["stages", name]))
            .into_iter()
            .map(|(k, l)| (k, l.to_string()))
            .collect(),
        params_dir,
        blocked,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::StageDef;

    #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields, default)]
    struct SeedParams {
        seed: u64,
    }
    /// Draws random numbers: its `seed` is offset per replicate.
    struct Random;
    impl StageDef for Random {
        type Params = SeedParams;
        const KIND: &'static str = "random";
        const VERSION: u32 = 1;
        const SUMMARY: &'static str = "draws random numbers";
        const NEEDS: &'static [&'static str] = &[];
        const REPLICATE_SEEDS: &'static [&'static str] = &["seed"];
    }
    /// Deterministic: shared by every replicate.
    struct Fixed;
    impl StageDef for Fixed {
        type Params = SeedParams;
        const KIND: &'static str = "fixed";
        const VERSION: u32 = 1;
        const SUMMARY: &'static str = "deterministic";
        const NEEDS: &'static [&'static str] = &[];
    }
    /// Merges its members.
    struct Gather;
    impl StageDef for Gather {
        type Params = SeedParams;
        const KIND: &'static str = "gather";
        const VERSION: u32 = 1;
        const SUMMARY: &'static str = "merges its members";
        const NEEDS: &'static [&'static str] = &[];
        const MIN_NEEDS: usize = 1;
    }

    fn plan(text: &str) -> Result<Plan, SpecError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exp.toml");
        std::fs::write(&path, text).unwrap();
        let mut registry = Registry::new();
        registry.declare::<Random>().declare::<Fixed>().declare::<Gather>();
        Plan::build(Experiment::load(&path)?, &registry, &mut DigestMemo::in_memory())
    }

    const STAGES: &str = "[stages.data]\nkind = \"fixed\"\n[stages.fit]\nkind = \"random\"\nneeds = [\"data\"]\nseed = 7\n\
                          [stages.ens]\nkind = \"gather\"\nneeds = [\"fit@replicate\"]\n";

    fn key(p: &Plan, variant: &str, stage: &str) -> StageKey {
        p.variant(variant).unwrap().stages[stage].key.clone()
    }

    #[test]
    fn replicates_offset_seeds_and_share_the_rest() {
        let p = plan(&format!("{STAGES}[sweep]\nreplicates = 3\n")).unwrap();
        let seeds: Vec<u64> = p.variants.iter().map(|v| v.stages["fit"].params["seed"].as_u64().unwrap()).collect();
        assert_eq!(seeds, [7, 8, 9]);
        assert_eq!(key(&p, "replicate=0", "data"), key(&p, "replicate=2", "data"), "no seeds: shared");
        assert_ne!(key(&p, "replicate=0", "fit"), key(&p, "replicate=1", "fit"));
        // Replicate 0 is the experiment as written.
        let plain =
            plan("[stages.data]\nkind = \"fixed\"\n[stages.fit]\nkind = \"random\"\nneeds = [\"data\"]\nseed = 7\n")
                .unwrap();
        assert_eq!(key(&plain, "default", "fit"), key(&p, "replicate=0", "fit"));
    }

    #[test]
    fn a_fan_in_reads_its_stage_in_every_variant_of_the_axis_and_runs_once() {
        let p = plan(&format!("{STAGES}[sweep]\nreplicates = 3\n")).unwrap();
        let ens = &p.variant("replicate=1").unwrap().stages["ens"];
        let members: Vec<&str> = ens.upstream.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(members, ["replicate=0", "replicate=1", "replicate=2"]);
        assert_eq!(ens.inputs.upstream.len(), 3);
        assert_eq!(key(&p, "replicate=0", "ens"), key(&p, "replicate=2", "ens"));
        let jobs: Vec<&Job> = p.jobs.iter().filter(|j| j.stage.name == "ens").collect();
        assert_eq!(jobs.len(), 1, "one ensemble for all replicates");
        assert_eq!(jobs[0].users.len(), 3);
        // Dependencies come first, even those from later variants.
        for (i, j) in p.jobs.iter().enumerate() {
            assert!(j.deps.iter().all(|&d| d < i), "job {i} ({}) comes before a dependency", j.stage.name);
        }
        let ens_job = p.jobs.iter().position(|j| j.stage.name == "ens").unwrap();
        assert_eq!(p.jobs[ens_job].deps.len(), 3);
        // Adding a replicate changes the ensemble's key and adds one fit, nothing else.
        let q = plan(&format!("{STAGES}[sweep]\nreplicates = 4\n")).unwrap();
        assert_ne!(key(&q, "replicate=0", "ens"), key(&p, "replicate=0", "ens"));
        assert_eq!(key(&q, "replicate=2", "fit"), key(&p, "replicate=2", "fit"));
    }

    #[test]
    fn a_fan_in_keeps_the_other_axes_apart() {
        let p = plan(&format!("{STAGES}[sweep]\n\"stages.data.seed\" = [1, 2]\nreplicates = 2\n")).unwrap();
        let of =
            |v: &str| p.variant(v).unwrap().stages["ens"].upstream.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>();
        assert_eq!(of("seed=2,replicate=1"), ["seed=2,replicate=0", "seed=2,replicate=1"]);
        assert_ne!(key(&p, "seed=1,replicate=0", "ens"), key(&p, "seed=2,replicate=0", "ens"));
        assert_eq!(p.jobs.iter().filter(|j| j.stage.name == "ens").count(), 2);
        // An axis may be named by its dotted key or its last part.
        let q = plan(&format!(
            "{}\n[sweep]\n\"stages.data.seed\" = [1, 2]\n",
            STAGES.replace("fit@replicate", "fit@stages.data.seed")
        ))
        .unwrap();
        assert_eq!(q.jobs.iter().filter(|j| j.stage.name == "ens").count(), 1);
        let r =
            plan(&format!("{}\n[sweep]\n\"stages.data.seed\" = [1, 2]\n", STAGES.replace("fit@replicate", "fit@seed")))
                .unwrap();
        assert_eq!(key(&r, "seed=1", "ens"), key(&q, "seed=2", "ens"));
    }

    #[test]
    fn keeping_one_variant_keeps_the_members_it_reads() {
        let p = plan(&format!("{STAGES}[sweep]\nreplicates = 3\n")).unwrap();
        let all = p.jobs.len();
        let one = p.keep_variants(&["replicate=1".to_string()]);
        assert_eq!(one.variants.len(), 1);
        assert_eq!(one.jobs.len(), all, "the ensemble of replicate=1 reads every replicate's fit");
        for (i, j) in one.jobs.iter().enumerate() {
            assert!(j.deps.iter().all(|&d| d < i));
        }
    }

    #[test]
    fn bad_fan_ins_are_located_errors() {
        let e =
            plan(&format!("{}[sweep]\nreplicates = 2\n", STAGES.replace("fit@replicate", "fit@folds"))).unwrap_err();
        assert_eq!(e.location.as_ref().unwrap().line, 9, "{e}");
        assert!(
            e.message.contains("`folds` is not a swept axis") && e.help.as_deref().unwrap().contains("replicate"),
            "{e}"
        );
        let e = plan(STAGES).unwrap_err();
        assert!(e.help.as_deref().unwrap().contains("sweeps nothing"), "{e}");
        let e = plan(&STAGES.replace("needs = [\"fit@replicate\"]", "needs = []")).unwrap_err();
        assert!(e.message.contains("needs at least 1 upstream stage") && e.location.is_some(), "{e}");
        let e = plan(&STAGES.replace("\nneeds = [\"fit@replicate\"]", "")).unwrap_err();
        assert!(e.message.contains("`ens` (gather) needs at least 1"), "{e}");
        let e = plan(&STAGES.replace("fit@replicate", "fit@")).unwrap_err();
        assert!(e.message.contains("name the axis"), "{e}");
        let e = plan(&format!("{}[sweep]\nreplicates = 2\n", STAGES.replace("fit@replicate", "fitt@replicate")))
            .unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `fit`?"), "{e}");
    }
}
