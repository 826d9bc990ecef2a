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

use indexmap::IndexMap;
use serde_json::Value;

use crate::exec::config::RunConfig;
use crate::filedigest::DigestMemo;
use crate::inputs::ExternalFile;
use crate::key::{KeyInputs, StageKey};
use crate::spec::{Experiment, Location, SpecError, Variant, did_you_mean};
use crate::stage::{Registry, Resources};
use crate::store::Store;

mod keying;
mod typing;

use keying::{fan_in_members, key_all};
use typing::{TypedVariant, type_variant};

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
    /// Variants left out by a selection (`--variant`): their stages are not shown, but a
    /// selected stage may share a job with them (the job stands for its first user, perhaps
    /// one of these) or read them (a fan-in's members), so jobs still resolve through them.
    pub unselected: Vec<VariantPlan>,
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
        Ok(Plan { experiment, run, variants, unselected: Vec::new(), jobs })
    }

    /// Keeps only the named variants and the jobs they reach (their fan-in members in other
    /// variants included).
    fn keep_variants(mut self, names: &[String]) -> Plan {
        let (selected, unselected) =
            std::mem::take(&mut self.variants).into_iter().partition(|v| names.contains(&v.variant.name));
        (self.variants, self.unselected) = (selected, unselected);
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

    /// A variant of the plan, selected or not (see [`Plan::unselected`]).
    pub fn variant(&self, name: &str) -> Option<&VariantPlan> {
        self.variants.iter().chain(&self.unselected).find(|v| v.variant.name == name)
    }

    pub fn job_of(&self, key: &StageKey) -> Option<usize> {
        self.jobs.iter().position(|j| &j.key == key)
    }

    /// Whether some stage waits for a missing input (only with [`MissingInputs::Allow`]).
    pub fn is_blocked(&self) -> bool {
        self.variants.iter().any(|v| v.stages.values().any(|s| s.blocked.is_some()))
    }
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
