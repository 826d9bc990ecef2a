//! `pipeline detect --experiment EXP.toml`: the detect command with what the experiment's last
//! run made, found through its results view — the trained checkpoint, the tile_infer and nms
//! parameters, and the threshold its score stage chose on validation. The front end resolves
//! them into the explicit command line (`--checkpoint … --overlap … --threshold …`), prints it,
//! and hands that to `pipeline-torch`: the two forms are the same command by construction.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use engine::Registry;
use engine::cli::{BadInput, ShownStage, find_in_view};
use engine::plan::PlannedStage;

use super::DetectArgs;
use crate::artifact::scores::Scores;
use crate::nms::NmsParams;
use torch_stage_defs::tile_infer::{CheckpointChoice, TileInferParams};

/// What `--experiment` resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub checkpoint: PathBuf,
    pub tile: TileInferParams,
    pub nms: NmsParams,
    /// The score stage's threshold (`None` when resolved from an nms stage).
    pub threshold: Option<f64>,
    /// The stages used, for the message: score, nms, tile_infer, train (as found).
    pub stages: Vec<String>,
    /// Whether the experiment file has changed since those outputs were made.
    pub changed: bool,
}

impl Resolved {
    /// The `pipeline detect` arguments (after `detect`) that do the same without --experiment.
    pub fn args(&self, a: &DetectArgs) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec!["--checkpoint".into(), self.checkpoint.clone().into()];
        let mut flag = |name: &str, value: String| {
            out.push(format!("--{name}").into());
            out.push(value.into());
        };
        // `{}` prints an f64 as the shortest text that parses back to the same number.
        flag("tile-size", self.tile.tile_size.to_string());
        flag("overlap", self.tile.overlap.to_string());
        flag("min-score", self.tile.min_score.to_string());
        flag("batch-size", self.tile.batch_size.to_string());
        flag("precision", self.tile.precision.name().to_string());
        flag("iou", self.nms.iou.to_string());
        match self.nms.radius_um {
            Some(um) => flag("radius-um", um.to_string()),
            None => flag("radius-px", self.nms.radius_px.to_string()),
        }
        if let Some(t) = self.threshold {
            flag("threshold", t.to_string());
        }
        flag("device", a.device.clone());
        if let Some(u) = a.um_per_px {
            flag("um-per-px", u.to_string());
        }
        if let Some(r) = &a.raw_boxes {
            out.push("--raw-boxes".into());
            out.push(r.clone().into());
        }
        out.push("-o".into());
        out.push(a.output.clone().into());
        out.extend(a.images.iter().map(|p| p.clone().into()));
        out
    }
}

/// Resolves `--experiment` (and `--variant`, `--stage`) through the experiment's results view.
pub fn resolve(a: &DetectArgs, registry: &Registry) -> Result<Resolved> {
    let exp = a.experiment.as_deref().context("--experiment is missing")?;
    let find = |stage: &str| {
        find_in_view(exp, stage, a.variant.as_deref(), &a.results.results_dir, &a.cache.cache_dir, registry)
    };
    // The plan (names, kinds, needs) comes with any lookup; the first one picks the stage.
    let chosen = match &a.stage {
        Some(s) => s.clone(),
        None => default_stage(exp, a, registry)?,
    };
    let first = find(&chosen)?;
    let stages = &first.plan.variants[0].stages;
    let up = |s: &PlannedStage, kind: &str| -> Result<String> {
        s.needs.iter().find(|n| stages[n.as_str()].kind == kind).cloned().ok_or_else(|| {
            BadInput(format!(
                "stage `{}` ({}) does not read a `{kind}` stage, so it is not the output of a trained model; \
                 choose a score or nms stage of one with --stage",
                s.name, s.kind
            ))
            .into()
        })
    };
    let planned = &stages[chosen.as_str()];
    let (score, nms_name) = match planned.kind.as_str() {
        "score" => (Some(first.clone()), up(planned, "nms")?),
        "nms" => (None, chosen.clone()),
        other => {
            return Err(BadInput(format!(
                "--stage {chosen}: a `{other}` stage; choose a score stage (its threshold is used) or an nms stage"
            ))
            .into());
        }
    };
    let tile_name = up(&stages[nms_name.as_str()], "tile_infer")?;
    let train_name = up(&stages[tile_name.as_str()], "train")?;
    let nms = if score.is_some() { find(&nms_name)? } else { first.clone() };
    let tile = find(&tile_name)?;
    let train = find(&train_name)?;

    let tile_params: TileInferParams = params_of(&tile)?;
    let nms_params: NmsParams = params_of(&nms)?;
    let threshold = match &score {
        Some(s) => Some(Scores::load(&s.store.out_dir(&s.entry.key)).map_err(|e| anyhow::anyhow!("{e}"))?.threshold),
        None => None,
    };
    let file = match tile_params.checkpoint {
        CheckpointChoice::Best => "best.safetensors",
        CheckpointChoice::Last => "last.safetensors",
    };
    let checkpoint = train.path.join("checkpoints").join(file);
    if !checkpoint.is_file() {
        anyhow::bail!("{}: no such checkpoint in the output of `{train_name}`", checkpoint.display());
    }
    let used: Vec<&ShownStage> = score.iter().chain([&nms, &tile, &train]).collect();
    Ok(Resolved {
        checkpoint,
        tile: tile_params,
        nms: nms_params,
        threshold,
        stages: used.iter().map(|s| s.stage.clone()).collect(),
        changed: used.iter().any(|s| s.current == Some(false)),
    })
}

/// The experiment's one score stage that scores a trained model (score ← nms ← tile_infer).
fn default_stage(exp: &Path, a: &DetectArgs, registry: &Registry) -> Result<String> {
    let store = engine::Store::open(&a.cache.cache_dir)?;
    let variants: Vec<String> = a.variant.iter().cloned().collect();
    let plan = engine::Plan::load_for_planning(exp, registry, &store, &variants, false)?;
    let stages = &plan.variants[0].stages;
    let reads = |s: &PlannedStage, kind: &str| -> Option<String> {
        s.needs.iter().find(|n| stages[n.as_str()].kind == kind).cloned()
    };
    let of_model = |s: &&PlannedStage| -> bool {
        let nms = if s.kind == "score" { reads(s, "nms") } else { Some(s.name.clone()) };
        nms.and_then(|n| reads(&stages[n.as_str()], "tile_infer")).is_some()
    };
    for kind in ["score", "nms"] {
        let found: Vec<&PlannedStage> = stages.values().filter(|s| s.kind == kind).filter(of_model).collect();
        match found.as_slice() {
            [one] => return Ok(one.name.clone()),
            [] => continue,
            many => {
                let names: Vec<&str> = many.iter().map(|s| s.name.as_str()).collect();
                return Err(BadInput(format!(
                    "{} has {} {kind} stages of trained models; choose one with --stage: {}",
                    exp.display(),
                    names.len(),
                    names.join(", ")
                ))
                .into());
            }
        }
    }
    Err(BadInput(format!("{} has no trained model scored through nms ← tile_infer ← train", exp.display())).into())
}

/// A stage's params as its cache entry recorded them (what made the output).
fn params_of<P: serde::de::DeserializeOwned>(s: &ShownStage) -> Result<P> {
    let record = s
        .store
        .record(&s.entry.key)?
        .with_context(|| format!("{}: the cache entry of `{}` has no record", s.path.display(), s.stage))?;
    serde_json::from_value(record.inputs.params)
        .with_context(|| format!("the recorded params of `{}` no longer parse", s.stage))
}

/// `pipeline detect --experiment …`: resolve, say what it is the same as, run that.
pub fn run(a: &DetectArgs, registry: &Registry) -> Result<std::process::ExitCode> {
    let resolved = resolve(a, registry)?;
    let args = resolved.args(a);
    let exp = a.experiment.as_deref().unwrap_or(Path::new(""));
    eprintln!(
        "detect with the last run of {} ({}); the same as:\n  pipeline detect {}",
        exp.display(),
        resolved.stages.join(" ← "),
        args.iter().map(|s| shell_word(&s.to_string_lossy())).collect::<Vec<_>>().join(" ")
    );
    if resolved.changed {
        eprintln!(
            "note: {} has changed since that run (`pipeline status` says why); `pipeline run` brings the results up to date",
            exp.display()
        );
    }
    let mut full: Vec<OsString> = vec!["detect".into()];
    full.extend(args);
    Ok(super::exec_torch_worker(full))
}

fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
