//! Small building blocks shared by the backbone, FPN and head.
//!
//! Parameters live in fp32 in the `VarStore`; every layer casts its parameters to the dtype of its
//! input, so feeding bf16 activations runs the whole network in bf16 while the gradients flow back
//! into the fp32 master weights (see `precision.rs`).

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// Creates a variable named `name` under `vs`, trainable or not (frozen variables are still saved
/// and loaded, they only get no gradient).
pub fn param(vs: &nn::Path, name: &str, dims: &[i64], init: Init, trainable: bool) -> Tensor {
    let t = nn::init::init(init, dims, vs.device());
    vs.add(name, t, trainable)
}

/// `t` in the given floating dtype (no copy when it already is).
pub fn cast(t: &Tensor, kind: Kind) -> Tensor {
    if t.kind() == kind { t.shallow_clone() } else { t.to_kind(kind) }
}

/// How a convolution's weight is initialised (torchvision's choices per module).
#[derive(Debug, Clone, Copy)]
pub enum ConvInit {
    /// ResNet: `kaiming_normal_(mode="fan_out", nonlinearity="relu")`.
    KaimingNormalFanOut,
    /// FPN and P6/P7: `kaiming_uniform_(a=1)`, bias 0.
    KaimingUniformA1,
    /// Head: normal(std), bias `bias`.
    Normal { std: f64, bias: f64 },
}

/// 2-D convolution with torchvision's parameter names `weight` and `bias`.
///
/// Input `[N, C_in, H, W]` → output `[N, C_out, ⌊(H + 2p − k) / s⌋ + 1, …]`.
#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: i64,
    pub padding: i64,
}

/// Shape and options of a [`Conv2d`].
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub c_in: i64,
    pub c_out: i64,
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    pub bias: bool,
    pub init: ConvInit,
    pub trainable: bool,
}

impl ConvSpec {
    /// A `k×k` convolution with "same" padding `(k − 1) / 2`, stride 1, bias, trainable.
    pub fn new(c_in: i64, c_out: i64, kernel: i64, init: ConvInit) -> Self {
        ConvSpec { c_in, c_out, kernel, stride: 1, padding: (kernel - 1) / 2, bias: true, init, trainable: true }
    }
    pub fn stride(self, stride: i64) -> Self {
        ConvSpec { stride, ..self }
    }
    pub fn padding(self, padding: i64) -> Self {
        ConvSpec { padding, ..self }
    }
    pub fn bias(self, bias: bool) -> Self {
        ConvSpec { bias, ..self }
    }
    pub fn trainable(self, trainable: bool) -> Self {
        ConvSpec { trainable, ..self }
    }
}

impl Conv2d {
    pub fn new(vs: &nn::Path, s: ConvSpec) -> Conv2d {
        let dims = [s.c_out, s.c_in, s.kernel, s.kernel];
        let (w_init, b_init) = match s.init {
            ConvInit::KaimingNormalFanOut => {
                let fan_out = (s.c_out * s.kernel * s.kernel) as f64;
                (Init::Randn { mean: 0.0, stdev: (2.0 / fan_out).sqrt() }, Init::Const(0.0))
            }
            ConvInit::KaimingUniformA1 => {
                let fan_in = (s.c_in * s.kernel * s.kernel) as f64;
                let bound = (3.0 / fan_in).sqrt();
                (Init::Uniform { lo: -bound, up: bound }, Init::Const(0.0))
            }
            ConvInit::Normal { std, bias } => (Init::Randn { mean: 0.0, stdev: std }, Init::Const(bias)),
        };
        let weight = param(vs, "weight", &dims, w_init, s.trainable);
        let bias = s.bias.then(|| param(vs, "bias", &[s.c_out], b_init, s.trainable));
        Conv2d { weight, bias, stride: s.stride, padding: s.padding }
    }

    /// The parameters in dtype `kind` (cast once, then reused over several inputs).
    pub fn cast_params(&self, kind: Kind) -> (Tensor, Option<Tensor>) {
        (cast(&self.weight, kind), self.bias.as_ref().map(|b| cast(b, kind)))
    }

    /// Convolution with parameters already cast by [`Conv2d::cast_params`].
    pub fn apply_with(&self, xs: &Tensor, params: &(Tensor, Option<Tensor>)) -> Tensor {
        xs.conv2d(&params.0, params.1.as_ref(), [self.stride; 2], [self.padding; 2], [1, 1], 1)
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.apply_with(xs, &self.cast_params(xs.kind()))
    }
}

/// GroupNorm with torchvision's parameter names `weight`, `bias` (ε 1e-5). `[N, C, H, W]` → same.
#[derive(Debug)]
pub struct GroupNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub groups: i64,
    pub eps: f64,
}

impl GroupNorm {
    pub fn new(vs: &nn::Path, groups: i64, channels: i64) -> GroupNorm {
        GroupNorm {
            weight: param(vs, "weight", &[channels], Init::Const(1.0), true),
            bias: param(vs, "bias", &[channels], Init::Const(0.0), true),
            groups,
            eps: 1e-5,
        }
    }

    pub fn cast_params(&self, kind: Kind) -> (Tensor, Tensor) {
        (cast(&self.weight, kind), cast(&self.bias, kind))
    }

    pub fn apply_with(&self, xs: &Tensor, params: &(Tensor, Tensor)) -> Tensor {
        xs.group_norm(self.groups, Some(&params.0), Some(&params.1), self.eps, true)
    }
}
