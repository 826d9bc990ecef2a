//! The train stage's domain-generalisation params: domain-adversarial training
//! (`[stages.train.domain_adversarial]`), Fourier-domain mixing (`[stages.train.augment.fourier]`)
//! and stain normalisation (`stain_norm`). Each is absent by default, and absent params stay out
//! of the stage key, so experiments that use none of them keep their keys.

use engine::ParamError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the weight of the reversed domain gradient grows over training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DomainSchedule {
    /// DANN's ramp: λ(p) = weight · (2 / (1 + e^(−10 p)) − 1) over the training progress p.
    Dann,
    /// λ = weight from the first step.
    Constant,
}

/// Domain-adversarial training (DANN, as in the MIDOG reference algorithm): a domain classifier
/// (scanner = domain) on FPN levels behind a gradient-reversal layer, trained on the patches of
/// every batch, including `unlabelled_per_batch` patches of unlabelled images that feed only the
/// domain loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DomainAdversarialParams {
    /// Largest coefficient of the reversed gradient (λ at the end of the ramp).
    pub weight: f64,
    /// "dann" (the ramp 2 / (1 + e^(−10 p)) − 1 over the training progress p) or "constant".
    pub schedule: DomainSchedule,
    /// FPN levels the classifier looks at, e.g. ["p3", "p4", "p5"] ("p6", "p7" with
    /// fpn_levels = "p3p7"; CenterNet has P3–P5).
    pub levels: Vec<String>,
    /// Patches of unlabelled images (uniformly placed) added to every batch; 0: the domains are
    /// the labelled scanners only.
    pub unlabelled_per_batch: usize,
    /// Channels of the classifier's convolutions.
    pub hidden_channels: i64,
}

impl Default for DomainAdversarialParams {
    fn default() -> Self {
        DomainAdversarialParams {
            weight: 1.0,
            schedule: DomainSchedule::Dann,
            levels: vec!["p3".into(), "p4".into(), "p5".into()],
            unlabelled_per_batch: 4,
            hidden_channels: 128,
        }
    }
}

impl DomainAdversarialParams {
    /// λ at training progress `p` ∈ [0, 1].
    pub fn lambda(&self, progress: f64) -> f64 {
        match self.schedule {
            DomainSchedule::Dann => {
                let p = progress.clamp(0.0, 1.0);
                self.weight * (2.0 / (1.0 + (-10.0 * p).exp()) - 1.0)
            }
            DomainSchedule::Constant => self.weight,
        }
    }

    /// Level indices (0 = P3) of `levels`, checked against the detector's `available` levels.
    pub fn level_indices(&self, available: usize) -> Result<Vec<usize>, String> {
        let mut out = Vec::new();
        for name in &self.levels {
            let index = name
                .strip_prefix('p')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n >= 3)
                .map(|n| n - 3)
                .ok_or_else(|| format!("`{name}` is not a pyramid level; use \"p3\" … \"p7\""))?;
            if index >= available {
                return Err(format!("`{name}`: the detector has P3–P{} only", available + 2));
            }
            if out.contains(&index) {
                return Err(format!("`{name}` listed twice"));
            }
            out.push(index);
        }
        if out.is_empty() {
            return Err("name at least one level, e.g. [\"p3\", \"p4\", \"p5\"]".into());
        }
        Ok(out)
    }

    pub fn validate(&self) -> Result<(), ParamError> {
        let at = |key: &str, msg: String| ParamError::new(&["domain_adversarial", key], msg);
        if !(self.weight.is_finite() && self.weight > 0.0) {
            return Err(at("weight", "must be a positive number".into()));
        }
        self.level_indices(5).map_err(|e| at("levels", e))?;
        if !(1..=4096).contains(&self.hidden_channels) {
            return Err(at("hidden_channels", "must be in 1..=4096".into()));
        }
        Ok(())
    }
}

/// Where Fourier mixing takes its style patches from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StyleSource {
    /// The other training images.
    Training,
    /// The unlabelled images (the target scanner's look, as in FDA).
    Unlabelled,
    /// Both.
    All,
}

/// Fourier-domain mixing of training patches (see `midog_data::loader::fourier`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FourierParams {
    /// Blend ratio in [0, 1]: 0 keeps a patch, 1 replaces its low-frequency amplitude.
    pub beta: f64,
    /// Low-frequency window half-side as a fraction of the patch side (FDA's L), in (0, 0.5].
    pub window: f64,
    /// Probability in [0, 1] that a training patch is mixed.
    pub probability: f64,
    /// "training", "unlabelled" or "all": the images style patches are drawn from.
    pub styles: StyleSource,
    /// Style patches drawn per epoch.
    pub bank_size: usize,
}

impl Default for FourierParams {
    fn default() -> Self {
        FourierParams { beta: 0.5, window: 0.05, probability: 0.5, styles: StyleSource::All, bank_size: 64 }
    }
}

impl FourierParams {
    pub fn validate(&self) -> Result<(), ParamError> {
        let at = |key: &str, msg: &str| ParamError::new(&["augment", "fourier", key], msg);
        if !(0.0..=1.0).contains(&self.beta) {
            return Err(at("beta", "must be in [0, 1] (0 keeps a patch, 1 replaces its low-frequency amplitude)"));
        }
        if !(self.window > 0.0 && self.window <= 0.5) {
            return Err(at("window", "must be in (0, 0.5]"));
        }
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(at("probability", "must be a probability in [0, 1]"));
        }
        if self.bank_size == 0 {
            return Err(at("bank_size", "must be at least 1"));
        }
        Ok(())
    }
}

/// Stain normalisation of every patch and tile, to a reference computed from the training images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StainNorm {
    /// Macenko et al. 2009: stain vectors and concentrations.
    Macenko,
    /// Reinhard et al. 2001: lαβ means and standard deviations (cheaper, coarser).
    Reinhard,
}

impl StainNorm {
    pub fn method(self) -> midog_data::stain::StainMethod {
        match self {
            StainNorm::Macenko => midog_data::stain::StainMethod::Macenko,
            StainNorm::Reinhard => midog_data::stain::StainMethod::Reinhard,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_levels_and_ranges() {
        let da = DomainAdversarialParams { weight: 0.5, ..Default::default() };
        assert_eq!(da.lambda(0.0), 0.0);
        assert!((da.lambda(1.0) - 0.5 * (2.0 / (1.0 + (-10f64).exp()) - 1.0)).abs() < 1e-15);
        assert_eq!(DomainAdversarialParams { schedule: DomainSchedule::Constant, ..da.clone() }.lambda(0.0), 0.5);
        assert_eq!(da.level_indices(3).unwrap(), vec![0, 1, 2]);
        let p7 = DomainAdversarialParams { levels: vec!["p7".into()], ..Default::default() };
        assert!(p7.level_indices(3).unwrap_err().contains("P3–P5"));
        assert_eq!(p7.level_indices(5).unwrap(), vec![4]);
        let bad = DomainAdversarialParams { levels: vec!["c4".into()], ..Default::default() };
        assert_eq!(bad.validate().unwrap_err().path, ["domain_adversarial", "levels"]);
        let f = FourierParams { beta: 1.2, ..Default::default() };
        let e = f.validate().unwrap_err();
        assert_eq!(e.path, ["augment", "fourier", "beta"]);
        assert!(e.message.contains("[0, 1]"));
    }
}
