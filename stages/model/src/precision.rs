//! Training precision: fp32, bf16 by explicit casts, fp16 by autocast with a dynamic loss scaler.
//!
//! * `Bf16`: the input is cast to bf16 and every layer casts its fp32 master parameters to the input
//!   dtype (see `layers.rs`), so the network computes in bf16 and the gradients reach the fp32
//!   variables through the casts. The head outputs are cast back to fp32 before the loss. tch's
//!   `autocast` cannot do this: it always uses the default autocast dtype, fp16 on CUDA.
//! * `Fp16`: the forward runs inside `tch::autocast` (CUDA only; a no-op elsewhere) and the loss is
//!   scaled by a [`LossScaler`] (as `torch.cuda.amp.GradScaler`): gradients are unscaled and checked
//!   for inf/NaN, the step is skipped when any is found and the scale backs off. Deciding whether to
//!   step needs one host read per step (the only sync of the fp16 path).

pub use midog_model_config::Precision;
use tch::{Kind, Tensor, nn};

/// The libtorch side of [`Precision`] (the enum itself lives in the libtorch-free config crate).
pub trait PrecisionExt: Copy {
    /// Dtype the model's input is cast to (fp16 stays fp32: autocast casts per op).
    fn input_kind(self) -> Kind;
    /// Casts a normalised float input batch for the forward pass.
    fn prepare_input(self, images: &Tensor) -> Tensor;
    /// Runs `f` (the forward pass) under fp16 autocast for `Fp16`, plainly otherwise.
    fn run<T>(self, f: impl FnOnce() -> T) -> T;
    /// Whether this precision needs a [`LossScaler`].
    fn needs_loss_scaling(self) -> bool;
}

impl PrecisionExt for Precision {
    fn input_kind(self) -> Kind {
        match self {
            Precision::Bf16 => Kind::BFloat16,
            Precision::Fp32 | Precision::Fp16 => Kind::Float,
        }
    }

    fn prepare_input(self, images: &Tensor) -> Tensor {
        crate::layers::cast(images, self.input_kind())
    }

    fn run<T>(self, f: impl FnOnce() -> T) -> T {
        match self {
            Precision::Fp16 => tch::autocast(true, f),
            _ => f(),
        }
    }

    fn needs_loss_scaling(self) -> bool {
        self == Precision::Fp16
    }
}

/// Dynamic loss scaler (GradScaler semantics: start 2^16, ×2 after 2000 good steps, ×0.5 on overflow).
///
/// The scale lives on the host, so scaling the loss never synchronises; only [`LossScaler::update`]
/// needs the `found_inf` value.
#[derive(Debug, Clone)]
pub struct LossScaler {
    pub scale: f64,
    pub growth_factor: f64,
    pub backoff_factor: f64,
    pub growth_interval: u32,
    good_steps: u32,
    enabled: bool,
}

impl LossScaler {
    /// Enabled for `Fp16`; a pass-through otherwise.
    pub fn new(precision: Precision) -> Self {
        LossScaler {
            scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            good_steps: 0,
            enabled: precision.needs_loss_scaling(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `loss · scale` (the loss itself when disabled).
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        if self.enabled { loss * self.scale } else { loss.shallow_clone() }
    }

    /// Divides the gradients of `vars` by the scale in place and returns a 0-dim bool tensor on the
    /// device: true when any gradient is inf/NaN. Variables without gradient are skipped.
    pub fn unscale_(&self, vars: &[Tensor]) -> Option<Tensor> {
        if !self.enabled {
            return None;
        }
        let _guard = tch::no_grad_guard();
        let inv = 1.0 / self.scale;
        let mut flags = Vec::with_capacity(vars.len());
        for v in vars {
            let mut g = v.grad();
            if !g.defined() {
                continue;
            }
            flags.push(g.isfinite().all().logical_not());
            let _ = g.g_mul_scalar_(inv);
        }
        if flags.is_empty() {
            return None;
        }
        Some(Tensor::stack(&flags, 0).any())
    }

    /// Updates the scale after a step; returns whether the optimiser should step (no overflow).
    pub fn update(&mut self, found_inf: bool) -> bool {
        if !self.enabled {
            return true;
        }
        if found_inf {
            self.scale *= self.backoff_factor;
            self.good_steps = 0;
            false
        } else {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale *= self.growth_factor;
                self.good_steps = 0;
            }
            true
        }
    }
}

/// Converts every 4-D variable of `vs` (conv weights) to channels-last memory layout in place.
/// Together with channels-last inputs ([`crate::transform::normalize_images`]) this lets cuDNN use
/// its NHWC kernels (tensor cores for bf16/fp16). Call before creating the optimiser.
pub fn to_channels_last(vs: &nn::VarStore) {
    let _guard = tch::no_grad_guard();
    for (_, mut v) in vs.variables() {
        if v.dim() == 4 {
            let cl = v.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
            v.set_data(&cl);
        }
    }
}

/// Whether a 4-D tensor is laid out channels-last (`NHWC` in memory).
pub fn is_channels_last(t: &Tensor) -> bool {
    if t.dim() != 4 {
        return false;
    }
    let (z, s) = (t.size(), t.stride());
    let expected = [z[1] * z[2] * z[3], 1, z[3] * z[1], z[1]];
    (0..4).all(|i| z[i] == 1 || s[i] == expected[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn scaler_logic() {
        let mut s = LossScaler::new(Precision::Fp16);
        s.growth_interval = 2;
        assert!(s.update(false));
        assert!(s.update(false));
        assert_eq!(s.scale, 131072.0);
        assert!(!s.update(true));
        assert_eq!(s.scale, 65536.0);
        let off = LossScaler::new(Precision::Bf16);
        assert!(!off.enabled());
        let x = Tensor::from_slice(&[2f32]);
        assert!(off.scale_loss(&x).equal(&x));
    }

    #[test]
    fn unscale_detects_overflow() {
        let s = LossScaler::new(Precision::Fp16);
        let w = Tensor::from_slice(&[1f32, 2.]).set_requires_grad(true);
        (&w * 65536.0).sum(Kind::Float).backward();
        let found = s.unscale_(std::slice::from_ref(&w)).unwrap();
        assert!(!bool::try_from(&found).unwrap());
        let g: Vec<f32> = Vec::try_from(w.grad()).unwrap();
        assert_eq!(g, vec![1.0, 1.0]);
        let v = Tensor::from_slice(&[1f32]).set_requires_grad(true);
        (&v * f64::INFINITY).sum(Kind::Float).backward();
        assert!(bool::try_from(&s.unscale_(&[v]).unwrap()).unwrap());
    }

    #[test]
    fn channels_last_conversion() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().randn_standard("w", &[4, 3, 3, 3]);
        let before = w.copy();
        to_channels_last(&vs);
        assert!(is_channels_last(&vs.variables()["w"]));
        assert!(vs.variables()["w"].equal(&before));
        assert!(is_channels_last(&w), "shared with the module's handle");
    }
}
