//! The stage contract: what a stage kind declares (kind, implementation version, typed params,
//! standard upstream, external inputs, resources) and how the engine talks to it.
//!
//! Product crates implement [`StageDef`] for a zero-sized type per kind and register it in a
//! [`Registry`], with or without a runner: a binary can know every kind (to plan, key and explain
//! them) while only the binary named by [`StageDef::WORKER`] can run it.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::context::StageContext;
use crate::error::{ParamError, StageError};
use crate::inputs::ExternalInput;
use crate::paramdoc::ParamDoc;

/// What a stage needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// CPU threads it can use; 0 means "as many as the run allows" (`--jobs`).
    pub cpus: usize,
    /// GPUs it wants. It still runs on a machine without any (devices then come empty).
    pub gpus: usize,
    /// Memory it expects to use, in MiB (used for Slurm's `--mem`).
    pub memory_mb: u64,
}

impl Default for Resources {
    fn default() -> Self {
        Resources { cpus: 1, gpus: 0, memory_mb: 2048 }
    }
}

/// One stage kind, typed. Implement it on a unit struct and register it.
pub trait StageDef: Send + Sync + 'static {
    /// The parameters of `[stages.NAME]`. Unknown keys are errors (use
    /// `#[serde(deny_unknown_fields, default)]`); doc comments become `pipeline stages` docs.
    type Params: Serialize + DeserializeOwned + JsonSchema + Default + Send + Sync + 'static;
    const KIND: &'static str;
    /// Implementation version: bump it whenever the stage's output for the same inputs changes.
    const VERSION: u32;
    /// One line for `pipeline stages`.
    const SUMMARY: &'static str;
    /// Standard upstream stage names, used when a stage table has no `needs`.
    const NEEDS: &'static [&'static str];
    /// The executable (a sibling of the current one) that runs this kind; `None` = this one.
    const WORKER: Option<&'static str> = None;
    /// Top-level params that choose *how* the stage runs, not what it produces (device, thread
    /// counts): they reach the stage but stay out of its key.
    const NON_KEY_PARAMS: &'static [&'static str] = &[];

    /// Top-level params that are file-system paths. A relative one resolves against the
    /// directory of the experiment file that set it (a base file's own directory when it came
    /// through `extends`), and [`StageDef::external_inputs`] and the running stage get that
    /// directory as their base.
    const PATH_PARAMS: &'static [&'static str] = &[];

    /// Whether the stage's output shows names from the experiment file: its own stage name,
    /// the names of its direct upstream stages, the experiment's or the variant's (a report's
    /// title, legends and file names). Those names then enter its key, so a renamed stage or
    /// variant is never served from the cache under its old name. Stages that leave it `false`
    /// keep names out of their output: they may use them in messages only.
    const NAMES_IN_OUTPUT: bool = false;

    /// Checks that go beyond types (ranges, combinations).
    fn validate(_params: &Self::Params) -> Result<(), ParamError> {
        Ok(())
    }

    /// Files outside the cache that the stage reads (their content enters the key).
    fn external_inputs(_params: &Self::Params, _base: &Path) -> Result<Vec<ExternalInput>, ParamError> {
        Ok(Vec::new())
    }

    fn resources(_params: &Self::Params) -> Resources {
        Resources::default()
    }
}

/// Runs a stage kind with its typed parameters.
pub type Runner<P> = fn(&P, &StageContext) -> Result<(), StageError>;

/// The object-safe face of a stage kind that the engine works with.
pub trait Stage: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    fn summary(&self) -> &'static str;
    fn needs(&self) -> &'static [&'static str];
    fn worker(&self) -> Option<&'static str>;
    fn non_key_params(&self) -> &'static [&'static str];
    fn path_params(&self) -> &'static [&'static str];
    fn names_in_output(&self) -> bool;
    fn can_run(&self) -> bool;
    fn param_docs(&self) -> Vec<ParamDoc>;
    /// Types the raw table, fills defaults, validates, and returns the canonical params.
    fn resolve(&self, raw: &toml::Table) -> Result<Value, ParamError>;
    fn external_inputs(&self, params: &Value, base: &Path) -> Result<Vec<ExternalInput>, ParamError>;
    fn resources(&self, params: &Value) -> Resources;
    fn run(&self, params: &Value, ctx: &StageContext) -> Result<(), StageError>;
}

struct Typed<S: StageDef> {
    runner: Option<Runner<S::Params>>,
    _s: PhantomData<fn() -> S>,
}

impl<S: StageDef> Typed<S> {
    fn typed(&self, params: &Value) -> Result<S::Params, ParamError> {
        serde_json::from_value(params.clone())
            .map_err(|e| ParamError::new(&[], format!("internal: resolved params no longer parse: {e}")))
    }
}

impl<S: StageDef> Stage for Typed<S> {
    fn kind(&self) -> &'static str {
        S::KIND
    }
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn summary(&self) -> &'static str {
        S::SUMMARY
    }
    fn needs(&self) -> &'static [&'static str] {
        S::NEEDS
    }
    fn worker(&self) -> Option<&'static str> {
        S::WORKER
    }
    fn non_key_params(&self) -> &'static [&'static str] {
        S::NON_KEY_PARAMS
    }
    fn path_params(&self) -> &'static [&'static str] {
        S::PATH_PARAMS
    }
    fn can_run(&self) -> bool {
        self.runner.is_some()
    }
    fn names_in_output(&self) -> bool {
        S::NAMES_IN_OUTPUT
    }
    fn param_docs(&self) -> Vec<ParamDoc> {
        let schema = schemars::schema_for!(S::Params);
        let defaults = serde_json::to_value(S::Params::default()).unwrap_or(Value::Null);
        crate::paramdoc::docs_from_schema(schema.as_value(), &defaults)
    }
    fn resolve(&self, raw: &toml::Table) -> Result<Value, ParamError> {
        let typed: S::Params = crate::typed::from_table(raw)?;
        S::validate(&typed)?;
        serde_json::to_value(&typed).map_err(|e| ParamError::new(&[], format!("params cannot be encoded: {e}")))
    }
    fn external_inputs(&self, params: &Value, base: &Path) -> Result<Vec<ExternalInput>, ParamError> {
        S::external_inputs(&self.typed(params)?, base)
    }
    fn resources(&self, params: &Value) -> Resources {
        self.typed(params).map(|p| S::resources(&p)).unwrap_or_default()
    }
    fn run(&self, params: &Value, ctx: &StageContext) -> Result<(), StageError> {
        let Some(runner) = self.runner else {
            return Err(StageError::msg(format!(
                "stage kind `{}` is run by `{}`, not by this executable",
                S::KIND,
                S::WORKER.unwrap_or("another executable")
            )));
        };
        let typed = self.typed(params).map_err(|e| StageError::msg(e.message))?;
        runner(&typed, ctx)
    }
}

/// The first key of `raw` that params type `P` does not know (the check `pipeline run` does), for
/// tools that read stage params from other files (e.g. a model TOML).
pub fn unknown_key<P: JsonSchema>(raw: &toml::Table) -> Option<ParamError> {
    let schema = schemars::schema_for!(P);
    crate::schema_check::unknown_key(raw, schema.as_value())
}

/// Every stage kind a binary knows.
#[derive(Default, Clone)]
pub struct Registry {
    stages: BTreeMap<&'static str, Arc<dyn Stage>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kind this binary can plan and key but not run (its `WORKER` runs it).
    pub fn declare<S: StageDef>(&mut self) -> &mut Self {
        self.stages.insert(S::KIND, Arc::new(Typed::<S> { runner: None, _s: PhantomData }));
        self
    }

    /// Adds a kind together with the function that runs it.
    pub fn register<S: StageDef>(&mut self, runner: Runner<S::Params>) -> &mut Self {
        self.stages.insert(S::KIND, Arc::new(Typed::<S> { runner: Some(runner), _s: PhantomData }));
        self
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Stage>> {
        self.stages.get(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.stages.keys().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Stage>> {
        self.stages.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields, default)]
    struct TrainParams {
        /// Learning rate.
        lr: f64,
        epochs: u32,
        opt: Opt,
    }
    #[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    enum Opt {
        Adam,
        Sgd,
    }
    impl Default for TrainParams {
        fn default() -> Self {
            TrainParams { lr: 1e-4, epochs: 10, opt: Opt::Adam }
        }
    }
    struct Train;
    impl StageDef for Train {
        type Params = TrainParams;
        const KIND: &'static str = "train";
        const VERSION: u32 = 1;
        const SUMMARY: &'static str = "trains";
        const NEEDS: &'static [&'static str] = &["sample"];
        fn validate(p: &TrainParams) -> Result<(), ParamError> {
            if p.lr <= 0.0 { Err(ParamError::new(&["lr"], "lr must be positive")) } else { Ok(()) }
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::new();
        r.declare::<Train>();
        r
    }

    fn resolve(text: &str) -> Result<Value, ParamError> {
        registry().get("train").unwrap().resolve(&toml::from_str(text).unwrap())
    }

    #[test]
    fn resolution_fills_defaults_and_normalises_numbers() {
        let a = resolve("lr = 1e-4").unwrap();
        let b = resolve("lr = 0.0001\nepochs = 10").unwrap();
        assert_eq!(a, b);
        assert_eq!(a["opt"], "adam");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_located_with_suggestions() {
        let e = resolve("lrr = 1").unwrap_err();
        assert_eq!(e.path, ["lrr"]);
        assert_eq!(e.help.as_deref(), Some("did you mean `lr`?"));
        let e = resolve("opt = \"adma\"").unwrap_err();
        assert_eq!(e.path, ["opt"]);
        assert_eq!(e.help.as_deref(), Some("did you mean `adam`?"));
        let e = resolve("epochs = \"ten\"").unwrap_err();
        assert_eq!(e.path, ["epochs"]);
        let e = resolve("lr = -1.0").unwrap_err();
        assert_eq!(e.path, ["lr"]);
    }

    #[test]
    fn docs_come_from_the_code() {
        let docs = registry().get("train").unwrap().param_docs();
        let lr = docs.iter().find(|d| d.name == "lr").unwrap();
        assert_eq!(lr.doc, "Learning rate.");
        assert_eq!(lr.default, "0.0001");
        let opt = docs.iter().find(|d| d.name == "opt").unwrap();
        assert!(opt.ty.contains("adam") && opt.ty.contains("sgd"), "{}", opt.ty);
    }
}
