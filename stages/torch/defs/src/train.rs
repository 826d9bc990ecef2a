//! The train stage's definition: a detector (params flattened from `DetectorConfig`: a RetinaNet,
//! or a CenterNet with `detector = "centernet"`) trained on the sample stage's plan. Its runner
//! is `stages/torch/src/train.rs`; this crate only types, keys and documents it, so planning never
//! loads libtorch.

use std::path::Path;

use engine::{ExternalInput, ParamError, Resources, StageDef};
use midog_model_config::{DetectorConfig, Precision};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::device::parse_device;
use crate::domain_generalization::{DomainAdversarialParams, FourierParams, StainNorm};
use crate::lr_schedule::Schedule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
    /// SGD with momentum (Nesterov off).
    Sgd,
}

/// Augmentations of training patches (validation patches are never augmented).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentParams {
    /// Random horizontal and vertical flips.
    pub flips: bool,
    /// Random 90° rotations.
    pub rot90: bool,
    /// HED stain jitter strength (0 = off; 0.05 is mild).
    pub stain_jitter: f64,
    /// Brightness jitter (multiplicative, ± this fraction).
    pub brightness: f64,
    /// Contrast jitter (± this fraction around the patch mean).
    pub contrast: f64,
    /// Scale jitter (± this fraction; 0 = off).
    pub scale_jitter: f64,
    /// Fourier-domain mixing with style patches of other images (absent: off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fourier: Option<FourierParams>,
}

impl Default for AugmentParams {
    fn default() -> Self {
        AugmentParams {
            flips: true,
            rot90: true,
            stain_jitter: 0.05,
            brightness: 0.1,
            contrast: 0.1,
            scale_jitter: 0.1,
            fourier: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TrainParams {
    #[serde(flatten)]
    pub model: DetectorConfig,
    /// "adam", "adamw" (decoupled weight decay) or "sgd" (momentum).
    pub optimizer: Optimizer,
    /// Peak learning rate.
    pub lr: f64,
    /// Weight decay (L2 for adam and sgd, decoupled for adamw).
    pub weight_decay: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Learning-rate schedule over all steps: "one-cycle", "cosine" or "constant".
    pub schedule: Schedule,
    /// Linear warm-up in optimisation steps (cosine and constant schedules).
    pub warmup_steps: u64,
    /// Passes over the sample stage's plan (each epoch draws new patches).
    pub epochs: u32,
    /// Patches per optimisation step.
    pub batch_size: usize,
    /// "fp32", "bf16" (explicit casts) or "fp16" (autocast + dynamic loss scaling, CUDA).
    pub precision: Precision,
    /// Clip the global gradient norm to this value (None: off).
    pub grad_clip: Option<f64>,
    /// Seed of the weight initialisation and of the augmentations.
    pub seed: u64,
    /// "auto" (CUDA if available), "cpu", "cuda" or "cuda:N". Not part of the key.
    pub device: String,
    /// Validate every N epochs (and after the last).
    pub val_every: u32,
    /// TensorBoard: the training losses every N optimisation steps (the mean of those steps;
    /// windows restart at each epoch). The learning rate is logged at every step, the epoch
    /// means and each validation as before.
    pub log_every: u32,
    pub augment: AugmentParams,
    /// Patch-loading threads (0: automatic). Not part of the key.
    pub loader_threads: usize,
    /// Domain-adversarial training with a domain classifier on FPN levels (absent: off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_adversarial: Option<DomainAdversarialParams>,
    /// Stain normalisation, "macenko" or "reinhard", to a reference computed from the training
    /// images; tile_infer and `pipeline detect` apply the same (it travels in the checkpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stain_norm: Option<StainNorm>,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            model: DetectorConfig::default(),
            optimizer: Optimizer::Adam,
            lr: 1e-4,
            weight_decay: 0.0,
            momentum: 0.9,
            schedule: Schedule::OneCycle,
            warmup_steps: 0,
            epochs: 10,
            batch_size: 12,
            precision: Precision::Fp32,
            grad_clip: None,
            seed: 0,
            device: "auto".into(),
            val_every: 1,
            log_every: 10,
            augment: AugmentParams::default(),
            loader_threads: 0,
            domain_adversarial: None,
            stain_norm: None,
        }
    }
}

pub struct TrainStage;

impl StageDef for TrainStage {
    type Params = TrainParams;
    const KIND: &'static str = "train";
    /// Bump with every change of the runner (`stages/torch/src/train.rs`) or of the model code that
    /// changes what a training produces. 2: one config type per detector family, so a family's key
    /// holds its own fields only (version 1 keyed the other family's defaults too), and per-step
    /// scalars in the TensorBoard file (`log_every`); same training.
    const VERSION: u32 = 2;
    const SUMMARY: &'static str =
        "trains a detector (RetinaNet, or CenterNet-style) on the sampled patches; resumable, exactly";
    const NEEDS: &'static [&'static str] = &["sample"];
    const WORKER: Option<&'static str> = Some(crate::TORCH_WORKER);
    const NON_KEY_PARAMS: &'static [&'static str] = &["device", "loader_threads"];
    const REPLICATE_SEEDS: &'static [&'static str] = &["seed"];
    const PATH_PARAMS: &'static [&'static str] = &["backbone_weights"];
    const HIGHLIGHTS: &'static [&'static str] = &["checkpoints/best.safetensors"];

    fn validate(p: &TrainParams) -> Result<(), ParamError> {
        p.model.validate().map_err(|e| ParamError::new(&[], e.to_string()))?;
        if !(p.lr > 0.0 && p.lr.is_finite()) {
            return Err(ParamError::new(&["lr"], "must be a positive number"));
        }
        if p.weight_decay < 0.0 {
            return Err(ParamError::new(&["weight_decay"], "must not be negative"));
        }
        if p.epochs == 0 {
            return Err(ParamError::new(&["epochs"], "must be at least 1"));
        }
        if p.batch_size == 0 {
            return Err(ParamError::new(&["batch_size"], "must be at least 1"));
        }
        if p.val_every == 0 {
            return Err(ParamError::new(&["val_every"], "must be at least 1"));
        }
        if p.log_every == 0 {
            return Err(ParamError::new(&["log_every"], "must be at least 1"));
        }
        if p.grad_clip.is_some_and(|g| g.is_nan() || g <= 0.0) {
            return Err(ParamError::new(&["grad_clip"], "must be positive"));
        }
        parse_device(&p.device).map_err(|e| ParamError::new(&["device"], e))?;
        if let Some(f) = &p.augment.fourier {
            f.validate()?;
        }
        if let Some(da) = &p.domain_adversarial {
            da.validate()?;
            da.level_indices(p.model.pyramid_levels())
                .map_err(|e| ParamError::new(&["domain_adversarial", "levels"], e))?;
        }
        Ok(())
    }

    fn external_inputs(p: &TrainParams, base: &Path) -> Result<Vec<ExternalInput>, ParamError> {
        let Some(w) = &p.model.trunk().backbone_weights else { return Ok(Vec::new()) };
        let path = base.join(w);
        if !path.is_file() {
            return Err(ParamError::missing_input(
                &["backbone_weights"],
                &path,
                format!("{} does not exist", path.display()),
            )
            .with_help(format!(
                "get torchvision's ImageNet weights with `pipeline weights fetch {} -o {}`",
                p.model.trunk().backbone.name(),
                path.parent().map(|d| d.display().to_string()).unwrap_or_else(|| ".".into())
            )));
        }
        Ok(vec![ExternalInput { name: format!("backbone_weights:{}", w.display()), path }])
    }

    fn resources(_p: &TrainParams) -> Resources {
        Resources { cpus: 0, gpus: 1, memory_mb: 16_384 }
    }
}
