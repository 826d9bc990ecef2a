//! ResNet-18/34/50 backbone exposing C3–C5, with torchvision's frozen batch norm (pretrained
//! weights) or trainable batch norm (training from scratch).
//!
//! Variable names equal torchvision's `resnet*` state dict (`conv1.weight`, `bn1.running_mean`,
//! `layer2.0.downsample.0.weight`, …) under the path given to [`ResNet::new`] (the RetinaNet uses
//! `backbone.body`). `avgpool`/`fc` are not built: detection never uses them.

use tch::Tensor;
use tch::nn::{self, Init};

use crate::config::{BackboneKind, BackboneNorm};
use crate::layers::{Conv2d, ConvInit, ConvSpec, cast, param};

/// torchvision's `FrozenBatchNorm2d`: batch norm with fixed statistics and affine parameters, all
/// four stored as non-trainable variables (`weight`, `bias`, `running_mean`, `running_var`).
///
/// `[N, C, H, W]` → `x · w / √(var + ε) + (b − mean · w / √(var + ε))`, same shape.
#[derive(Debug)]
pub struct FrozenBatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub eps: f64,
}

impl FrozenBatchNorm2d {
    pub fn new(vs: &nn::Path, channels: i64, eps: f64) -> Self {
        FrozenBatchNorm2d {
            weight: param(vs, "weight", &[channels], Init::Const(1.0), false),
            bias: param(vs, "bias", &[channels], Init::Const(0.0), false),
            running_mean: param(vs, "running_mean", &[channels], Init::Const(0.0), false),
            running_var: param(vs, "running_var", &[channels], Init::Const(1.0), false),
            eps,
        }
    }

    /// Per-channel `(scale, shift)` `[C]` in f32: `y = x · scale + shift`.
    pub fn scale_shift(&self) -> (Tensor, Tensor) {
        let scale = &self.weight * (&self.running_var + self.eps).rsqrt();
        let shift = &self.bias - &self.running_mean * &scale;
        (scale, shift)
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        // Same operation order as torchvision (bit-identical in fp32); scale and shift are computed
        // in fp32 and cast to the activation dtype so that bf16/fp16 activations stay in that dtype.
        let w = self.weight.reshape([1, -1, 1, 1]);
        let b = self.bias.reshape([1, -1, 1, 1]);
        let rv = self.running_var.reshape([1, -1, 1, 1]);
        let rm = self.running_mean.reshape([1, -1, 1, 1]);
        let scale = w * (rv + self.eps).rsqrt();
        let shift = b - rm * &scale;
        let kind = xs.kind();
        xs * cast(&scale, kind) + cast(&shift, kind)
    }
}

/// Trainable batch norm (`nn.BatchNorm2d`, momentum 0.1): batch statistics when training,
/// running statistics otherwise. Same variable names as torchvision.
#[derive(Debug)]
pub struct TrainableBatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub eps: f64,
}

impl TrainableBatchNorm2d {
    pub fn new(vs: &nn::Path, channels: i64, eps: f64, trainable: bool) -> Self {
        TrainableBatchNorm2d {
            weight: param(vs, "weight", &[channels], Init::Const(1.0), trainable),
            bias: param(vs, "bias", &[channels], Init::Const(0.0), trainable),
            running_mean: param(vs, "running_mean", &[channels], Init::Const(0.0), false),
            running_var: param(vs, "running_var", &[channels], Init::Const(1.0), false),
            eps,
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let kind = xs.kind();
        // Batch statistics are computed in fp32 for a bf16 input, then cast back.
        let x = cast(xs, tch::Kind::Float);
        let y = Tensor::batch_norm(
            &x,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train && self.weight.requires_grad(),
            0.1,
            self.eps,
            true,
        );
        cast(&y, kind)
    }
}

/// The backbone's normalisation layer.
#[derive(Debug)]
pub enum Norm {
    Frozen(FrozenBatchNorm2d),
    Batch(TrainableBatchNorm2d),
}

impl Norm {
    fn new(vs: &nn::Path, channels: i64, eps: f64, kind: BackboneNorm, trainable: bool) -> Norm {
        match kind {
            BackboneNorm::Frozen => Norm::Frozen(FrozenBatchNorm2d::new(vs, channels, eps)),
            BackboneNorm::Batch => Norm::Batch(TrainableBatchNorm2d::new(vs, channels, eps, trainable)),
        }
    }
}

/// `norm(conv(x))`: frozen batch norm (optionally folded into the convolution) or batch norm.
fn conv_norm(xs: &Tensor, conv: &Conv2d, norm: &Norm, fold: bool, train: bool) -> Tensor {
    match norm {
        Norm::Frozen(bn) => conv_bn(xs, conv, bn, fold),
        Norm::Batch(bn) => bn.forward_t(&conv.forward(xs), train),
    }
}

/// `bn(conv(x))` for a bias-free convolution followed by a frozen batch norm.
///
/// `fold`: fold the batch norm into the convolution (`W · scale`, bias `shift`), which saves two
/// element-wise passes over the activation in the forward pass and one in the backward pass; equal to
/// the unfolded result up to float rounding (~1e-6 relative). Gradients still reach `W`.
pub fn conv_bn(xs: &Tensor, conv: &Conv2d, bn: &FrozenBatchNorm2d, fold: bool) -> Tensor {
    if !fold {
        return bn.forward(&conv.forward(xs));
    }
    let (scale, shift) = bn.scale_shift();
    let w = &conv.weight * scale.view([-1, 1, 1, 1]);
    let kind = xs.kind();
    conv.apply_with(xs, &(cast(&w, kind), Some(cast(&shift, kind))))
}

/// Downsampling shortcut: conv1x1 (stride s, no bias) + frozen BN, named `downsample.0`, `downsample.1`.
#[derive(Debug)]
struct Downsample {
    conv: Conv2d,
    bn: Norm,
}

/// A residual block: BasicBlock (ResNet-18/34) or Bottleneck (ResNet-50, stride on the 3×3 conv as
/// torchvision's "ResNet v1.5").
#[derive(Debug)]
struct Block {
    convs: Vec<Conv2d>,
    bns: Vec<Norm>,
    downsample: Option<Downsample>,
}

impl Block {
    #[allow(clippy::too_many_arguments)]
    fn new(
        vs: &nn::Path,
        bottleneck: bool,
        c_in: i64,
        planes: i64,
        stride: i64,
        eps: f64,
        train: bool,
        norm: BackboneNorm,
    ) -> Block {
        let conv = |name: &str, ci, co, k, s| {
            let spec = ConvSpec::new(ci, co, k, ConvInit::KaimingNormalFanOut).stride(s).bias(false).trainable(train);
            Conv2d::new(&(vs / name), spec)
        };
        let (convs, bns, c_out) = if bottleneck {
            let c_out = planes * 4;
            let convs = vec![
                conv("conv1", c_in, planes, 1, 1),
                conv("conv2", planes, planes, 3, stride),
                conv("conv3", planes, c_out, 1, 1),
            ];
            let bns = ["bn1", "bn2", "bn3"]
                .iter()
                .zip([planes, planes, c_out])
                .map(|(n, c)| Norm::new(&(vs / *n), c, eps, norm, train))
                .collect();
            (convs, bns, c_out)
        } else {
            let convs = vec![conv("conv1", c_in, planes, 3, stride), conv("conv2", planes, planes, 3, 1)];
            let bns = vec![
                Norm::new(&(vs / "bn1"), planes, eps, norm, train),
                Norm::new(&(vs / "bn2"), planes, eps, norm, train),
            ];
            (convs, bns, planes)
        };
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let p = vs / "downsample";
            Downsample {
                conv: Conv2d::new(
                    &(&p / "0"),
                    ConvSpec::new(c_in, c_out, 1, ConvInit::KaimingNormalFanOut)
                        .stride(stride)
                        .bias(false)
                        .trainable(train),
                ),
                bn: Norm::new(&(&p / "1"), c_out, eps, norm, train),
            }
        });
        Block { convs, bns, downsample }
    }

    fn forward(&self, xs: &Tensor, fold: bool, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut out = xs.shallow_clone();
        for (i, (conv, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            out = conv_norm(&out, conv, bn, fold, train);
            if i < last {
                out = out.relu_();
            }
        }
        let identity = match &self.downsample {
            Some(d) => conv_norm(xs, &d.conv, &d.bn, fold, train),
            None => xs.shallow_clone(),
        };
        (out + identity).relu_()
    }
}

/// ResNet body without `avgpool`/`fc`.
///
/// `forward_t`: `[N, 3, H, W]` → `[C3, C4, C5]` with strides 8, 16, 32, i.e. spatial sizes obtained by
/// halving `H` (rounding up) 3, 4 and 5 times; channels per [`BackboneKind::out_channels`].
#[derive(Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: Norm,
    layers: Vec<Vec<Block>>,
    kind: BackboneKind,
    /// Fold the frozen batch norms into the convolutions (default; see [`conv_bn`]).
    pub fold_bn: bool,
}

impl ResNet {
    /// `trainable_layers`: 0–5 as torchvision's `trainable_backbone_layers` (counted from layer4 down to
    /// conv1); frozen convolutions are created as non-trainable variables.
    pub fn new(vs: &nn::Path, kind: BackboneKind, trainable_layers: u8, bn_eps: f64, norm: BackboneNorm) -> ResNet {
        let (bottleneck, counts) = match kind {
            BackboneKind::Resnet18 => (false, [2, 2, 2, 2]),
            BackboneKind::Resnet34 => (false, [3, 4, 6, 3]),
            BackboneKind::Resnet50 => (true, [3, 4, 6, 3]),
        };
        // torchvision: ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
        let trainable = |stage: u8| stage + trainable_layers >= 5; // stage 0 = conv1, 1..=4 = layerN
        let conv1 = Conv2d::new(
            &(vs / "conv1"),
            ConvSpec::new(3, 64, 7, ConvInit::KaimingNormalFanOut)
                .stride(2)
                .padding(3)
                .bias(false)
                .trainable(trainable(0)),
        );
        let bn1 = Norm::new(&(vs / "bn1"), 64, bn_eps, norm, trainable(0));
        let mut c_in = 64;
        let mut layers = Vec::with_capacity(4);
        for (i, &count) in counts.iter().enumerate() {
            let planes = 64 << i;
            let stride = if i == 0 { 1 } else { 2 };
            let p = vs / format!("layer{}", i + 1);
            let train = trainable(i as u8 + 1);
            let mut blocks = Vec::with_capacity(count);
            for b in 0..count {
                let s = if b == 0 { stride } else { 1 };
                blocks.push(Block::new(&(&p / b), bottleneck, c_in, planes, s, bn_eps, train, norm));
                c_in = if bottleneck { planes * 4 } else { planes };
            }
            layers.push(blocks);
        }
        ResNet { conv1, bn1, layers, kind, fold_bn: true }
    }

    pub fn kind(&self) -> BackboneKind {
        self.kind
    }

    /// `[N, 3, H, W]` → `[C3, C4, C5]`. `train` selects batch statistics for trainable batch norm;
    /// frozen batch norm ignores it.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        let fold = self.fold_bn;
        let mut x = conv_norm(xs, &self.conv1, &self.bn1, fold, train).relu_().max_pool2d(
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1],
            false,
        );
        let mut outs = Vec::with_capacity(3);
        for (i, layer) in self.layers.iter().enumerate() {
            for block in layer {
                x = block.forward(&x, fold, train);
            }
            if i >= 1 {
                outs.push(x.shallow_clone());
            }
        }
        outs
    }
}

/// Spatial size after one stride-2 stage of the network (conv 7×7/3×3 with padding, max-pool 3×3/p1,
/// conv1×1 stride 2): `⌈n / 2⌉`.
pub fn halve(n: i64) -> i64 {
    (n + 1) / 2
}

/// Spatial size of the stride-2^`level` feature map for an input of size `n` (level 3 = C3/P3).
pub fn level_size(n: i64, level: u32) -> i64 {
    (0..level).fold(n, |s, _| halve(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn shapes_and_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net =
            ResNet::new(&(vs.root() / "backbone" / "body"), BackboneKind::Resnet18, 3, 1e-5, BackboneNorm::Frozen);
        let vars = vs.variables();
        for name in [
            "backbone.body.conv1.weight",
            "backbone.body.bn1.running_var",
            "backbone.body.layer1.1.conv2.weight",
            "backbone.body.layer2.0.downsample.0.weight",
            "backbone.body.layer2.0.downsample.1.running_mean",
            "backbone.body.layer4.1.bn2.bias",
        ] {
            assert!(vars.contains_key(name), "{name}");
        }
        // 3 trainable stages: layer2..layer4; conv1 and layer1 frozen; BN never trainable
        assert!(!vars["backbone.body.conv1.weight"].requires_grad());
        assert!(!vars["backbone.body.layer1.0.conv1.weight"].requires_grad());
        assert!(vars["backbone.body.layer2.0.conv1.weight"].requires_grad());
        assert!(!vars["backbone.body.layer2.0.bn1.weight"].requires_grad());
        let x = Tensor::zeros([1, 3, 67, 45], (Kind::Float, Device::Cpu));
        let c = net.forward_t(&x, false);
        let sizes: Vec<Vec<i64>> = c.iter().map(|t| t.size()).collect();
        assert_eq!(sizes[0], vec![1, 128, level_size(67, 3), level_size(45, 3)]);
        assert_eq!(sizes[2], vec![1, 512, level_size(67, 5), level_size(45, 5)]);
        assert_eq!(level_size(67, 3), 9);
    }

    #[test]
    fn folded_batch_norm_equals_unfolded() {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut net = ResNet::new(&vs.root(), BackboneKind::Resnet18, 5, 1e-5, BackboneNorm::Frozen);
        tch::no_grad(|| {
            for (name, mut v) in vs.variables() {
                if name.contains("bn") || name.contains("downsample.1") {
                    let r = Tensor::rand_like(&v) * 0.5 + 0.75;
                    v.copy_(&r);
                }
            }
        });
        let x = Tensor::randn([2, 3, 64, 48], (Kind::Float, Device::Cpu));
        let folded = net.forward_t(&x, false);
        net.fold_bn = false;
        let plain = net.forward_t(&x, false);
        for (a, b) in folded.iter().zip(&plain) {
            let rel = f64::try_from((a - b).abs().max()).unwrap() / f64::try_from(b.abs().max()).unwrap();
            assert!(rel < 1e-5, "{rel}");
        }
    }

    #[test]
    fn batch_norm_trains_and_updates_running_statistics() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet::new(&vs.root(), BackboneKind::Resnet18, 5, 1e-5, BackboneNorm::Batch);
        let vars = vs.variables();
        assert!(vars["bn1.weight"].requires_grad());
        assert!(!vars["bn1.running_mean"].requires_grad());
        let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
        let before = vars["bn1.running_mean"].copy();
        let out = net.forward_t(&x, true);
        out[2].sum(Kind::Float).backward();
        assert!(vars["bn1.weight"].grad().defined());
        assert!(f64::try_from((&vars["bn1.running_mean"] - before).abs().sum(Kind::Float)).unwrap() > 0.0);
        // Evaluation uses the running statistics and leaves them alone.
        let frozen = vars["bn1.running_mean"].copy();
        let _ = tch::no_grad(|| net.forward_t(&x, false));
        assert_eq!(f64::try_from((&vars["bn1.running_mean"] - frozen).abs().sum(Kind::Float)).unwrap(), 0.0);
    }

    #[test]
    fn resnet50_channels() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet::new(&vs.root(), BackboneKind::Resnet50, 5, 1e-5, BackboneNorm::Frozen);
        assert!(vs.variables().contains_key("layer1.0.downsample.0.weight"));
        assert!(vs.variables().contains_key("layer4.2.conv3.weight"));
        let x = Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        let c: Vec<i64> = net.forward_t(&x, false).iter().map(|t| t.size()[1]).collect();
        assert_eq!(c, BackboneKind::Resnet50.out_channels().to_vec());
    }
}
