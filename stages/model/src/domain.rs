//! Domain-adversarial training (DANN, Ganin & Lempitsky 2015), as in the MIDOG 2021 reference
//! algorithm (Wilm et al.): a domain classifier on the detector's FPN features, behind a
//! gradient-reversal layer, learns to tell the scanners apart while the reversed gradient
//! teaches the trunk features that do not.
//!
//! - [`gradient_reversal`]: identity forward, `−λ × incoming gradient` backward.
//! - [`dann_ramp`]: the usual schedule of λ over training progress p ∈ [0, 1],
//!   `2 / (1 + e^(−10 p)) − 1`, from 0 (the classifier first learns on fixed features) to ≈ 1.
//! - [`DomainClassifier`]: per chosen level, conv3×3 + ReLU, conv3×3 (stride 2) + ReLU, global
//!   average pooling and a linear layer to the domain logits; the loss is the cross-entropy
//!   averaged over the images and the levels. Batched over the whole batch, labelled and
//!   unlabelled images alike, on the device; no host synchronisation.
//!
//! Shapes: N images, C FPN channels, D domains.

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::layers::{Conv2d, ConvInit, ConvSpec, cast, param};

/// Identity in the forward pass; the gradient flowing back is multiplied by `−lambda`.
///
/// `x.detach() − λ·(x − x.detach())`: the value is exactly `x` (the bracket is exactly 0), and
/// only the bracket's `x` carries a gradient, scaled by `−λ`.
pub fn gradient_reversal(x: &Tensor, lambda: f64) -> Tensor {
    let fixed = x.detach();
    &fixed - (x - &fixed) * lambda
}

/// DANN's ramp `2 / (1 + e^(−10 p)) − 1` of training progress `p` (clamped to [0, 1]).
pub fn dann_ramp(progress: f64) -> f64 {
    let p = progress.clamp(0.0, 1.0);
    2.0 / (1.0 + (-10.0 * p).exp()) - 1.0
}

/// The domain loss of a batch and its accuracy (both 0-d fp32 tensors on the device).
#[derive(Debug)]
pub struct DomainLoss {
    pub loss: Tensor,
    /// Share of (image, level) pairs whose domain the classifier got right.
    pub accuracy: Tensor,
}

#[derive(Debug)]
struct LevelHead {
    conv1: Conv2d,
    conv2: Conv2d,
    fc_weight: Tensor,
    fc_bias: Tensor,
}

impl LevelHead {
    fn new(vs: &nn::Path, in_channels: i64, hidden: i64, domains: i64) -> LevelHead {
        let init = ConvInit::Normal { std: 0.01, bias: 0.0 };
        let conv1 = Conv2d::new(&(vs / "conv1"), ConvSpec::new(in_channels, hidden, 3, init));
        let conv2 = Conv2d::new(&(vs / "conv2"), ConvSpec::new(hidden, hidden, 3, init).stride(2));
        let bound = 1.0 / (hidden as f64).sqrt();
        let fc = vs / "fc";
        let fc_weight = param(&fc, "weight", &[domains, hidden], Init::Uniform { lo: -bound, up: bound }, true);
        let fc_bias = param(&fc, "bias", &[domains], Init::Const(0.0), true);
        LevelHead { conv1, conv2, fc_weight, fc_bias }
    }

    /// `[N, C, h, w]` → logits `[N, D]` in fp32.
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = self.conv1.forward(x).relu_();
        let y = self.conv2.forward(&y).relu_();
        let pooled = y.mean_dim([2i64, 3].as_slice(), false, Kind::Float); // [N, hidden]
        pooled.linear(&cast(&self.fc_weight, Kind::Float), Some(&cast(&self.fc_bias, Kind::Float)))
    }
}

/// Domain classifier over some FPN levels (see the module docs). Build it in its own `VarStore`
/// so that detector checkpoints stay free of it.
#[derive(Debug)]
pub struct DomainClassifier {
    /// Indices into the detector's feature list (0 = P3).
    levels: Vec<usize>,
    heads: Vec<LevelHead>,
    domains: i64,
}

impl DomainClassifier {
    /// Heads named `level{i}.*` under `vs` for each of `levels`, `hidden` channels, `domains` ≥ 2.
    pub fn new(vs: &nn::Path, in_channels: i64, levels: &[usize], hidden: i64, domains: i64) -> DomainClassifier {
        let heads =
            levels.iter().map(|l| LevelHead::new(&(vs / format!("level{l}")), in_channels, hidden, domains)).collect();
        DomainClassifier { levels: levels.to_vec(), heads, domains }
    }

    pub fn domains(&self) -> i64 {
        self.domains
    }

    pub fn levels(&self) -> &[usize] {
        &self.levels
    }

    /// Logits `[N, D]` per chosen level, the features passing a gradient reversal of `lambda`.
    pub fn logits(&self, features: &[Tensor], lambda: f64) -> Vec<Tensor> {
        self.levels
            .iter()
            .zip(&self.heads)
            .map(|(&l, head)| head.forward(&gradient_reversal(&features[l], lambda)))
            .collect()
    }

    /// Cross-entropy of the domain labels `domains` (`[N]` i64, on the features' device),
    /// averaged over images and levels, with the accuracy.
    pub fn loss(&self, features: &[Tensor], domains: &Tensor, lambda: f64) -> DomainLoss {
        let logits = self.logits(features, lambda);
        let all = Tensor::cat(&logits, 0); // [levels · N, D]
        let labels = domains.repeat([logits.len() as i64]);
        let loss = all.cross_entropy_loss::<Tensor>(&labels, None, tch::Reduction::Mean, -100, 0.0);
        let accuracy = all.argmax(-1, false).eq_tensor(&labels).to_kind(Kind::Float).mean(Kind::Float);
        DomainLoss { loss, accuracy }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn gradient_reversal_flips_and_scales_the_gradient() {
        for lambda in [0.0, 0.37, 1.0, 2.5] {
            let x = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let incoming = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
            let y = gradient_reversal(&x, lambda);
            assert!(y.equal(&x.detach()), "the forward pass must be the identity");
            (&y * &incoming).sum(Kind::Float).backward();
            let expected = &incoming * -lambda;
            let diff = (x.grad() - &expected).abs().max().double_value(&[]);
            assert!(diff <= 1e-6 * (1.0 + lambda), "λ {lambda}: gradient off by {diff}");
        }
        // Sign, exactly: with λ = 1 the gradient is the negated incoming one.
        let x = Tensor::from_slice(&[1.0f32, -2.0, 3.0]).set_requires_grad(true);
        (gradient_reversal(&x, 1.0) * Tensor::from_slice(&[0.5f32, 2.0, -4.0])).sum(Kind::Float).backward();
        assert_eq!(Vec::<f32>::try_from(x.grad()).unwrap(), vec![-0.5, -2.0, 4.0]);
    }

    #[test]
    fn the_ramp_goes_from_zero_to_one() {
        assert_eq!(dann_ramp(0.0), 0.0);
        assert!((dann_ramp(1.0) - (2.0 / (1.0 + (-10f64).exp()) - 1.0)).abs() < 1e-15);
        assert!(dann_ramp(1.0) > 0.999);
        assert!((dann_ramp(0.1) - 0.462_117).abs() < 1e-5);
        assert_eq!(dann_ramp(-1.0), 0.0);
        let v: Vec<f64> = (0..=10).map(|i| dann_ramp(i as f64 / 10.0)).collect();
        assert!(v.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn the_classifier_learns_domains_and_reverses_into_the_features() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let clf = DomainClassifier::new(&vs.root(), 8, &[0, 1], 16, 3);
        // Three domains that differ in their mean feature.
        let domains = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2]);
        let shift = domains.to_kind(Kind::Float).view([6, 1, 1, 1]);
        let make = |s: i64| Tensor::randn([6, 8, s, s], (Kind::Float, Device::Cpu)) * 0.3 + &shift;
        let feats = vec![make(8), make(4)];
        let mut opt = nn::OptimizerConfig::build(nn::Adam::default(), &vs, 1e-2).unwrap();
        let first = clf.loss(&feats, &domains, 1.0).loss.double_value(&[]);
        assert!((first - 3f64.ln()).abs() < 0.2, "{first}");
        for _ in 0..60 {
            let l = clf.loss(&feats, &domains, 1.0);
            opt.backward_step(&l.loss);
        }
        let l = clf.loss(&feats, &domains, 1.0);
        assert!(l.loss.double_value(&[]) < 0.3 * first && l.accuracy.double_value(&[]) > 0.99);
        // The gradient reaching the features is the reversed one: λ = 0 gives none.
        let f0 = feats[0].detach().set_requires_grad(true);
        clf.loss(&[f0.shallow_clone(), feats[1].shallow_clone()], &domains, 0.0).loss.backward();
        assert_eq!(f0.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
        let f1 = feats[0].detach().set_requires_grad(true);
        let f2 = feats[0].detach().set_requires_grad(true);
        clf.loss(&[f1.shallow_clone(), feats[1].shallow_clone()], &domains, 1.0).loss.backward();
        clf.loss(&[f2.shallow_clone(), feats[1].shallow_clone()], &domains, -1.0).loss.backward();
        let sum = (f1.grad() + f2.grad()).abs().max().double_value(&[]);
        assert!(sum < 1e-7 && f1.grad().abs().max().double_value(&[]) > 0.0);
    }
}
