//! Feature pyramid network (torchvision `ops/feature_pyramid_network.py`) with the optional
//! `LastLevelP6P7` extra block.
//!
//! Variable names (under `backbone.fpn`): `inner_blocks.{i}.0.{weight,bias}` (1×1 lateral convs),
//! `layer_blocks.{i}.0.{weight,bias}` (3×3 output convs), `extra_blocks.p6.*`, `extra_blocks.p7.*`.

use tch::{Tensor, nn};

use crate::config::P6Source;
use crate::layers::{Conv2d, ConvInit, ConvSpec};

/// P6 = conv3×3/2(P5 or C5), P7 = conv3×3/2(ReLU(P6)).
#[derive(Debug)]
struct P6P7 {
    p6: Conv2d,
    p7: Conv2d,
    from: P6Source,
}

/// FPN over `[C3, C4, C5]`.
///
/// `forward`: `[C3 [N, c3, h3, w3], C4, C5]` → `[P3 [N, F, h3, w3], P4, P5]` (+ `P6, P7` with the extra
/// block, spatial size `⌈h/2⌉` each), F = `out_channels`.
#[derive(Debug)]
pub struct Fpn {
    inner_blocks: Vec<Conv2d>,
    layer_blocks: Vec<Conv2d>,
    extra: Option<P6P7>,
    out_channels: i64,
}

impl Fpn {
    /// `p6p7`: None for P3–P5 only; otherwise the input of P6.
    pub fn new(vs: &nn::Path, in_channels: &[i64], out_channels: i64, p6p7: Option<P6Source>) -> Fpn {
        let init = ConvInit::KaimingUniformA1;
        let inner_blocks = in_channels
            .iter()
            .enumerate()
            .map(|(i, &c)| Conv2d::new(&(vs / "inner_blocks" / i / "0"), ConvSpec::new(c, out_channels, 1, init)))
            .collect();
        let layer_blocks = (0..in_channels.len())
            .map(|i| Conv2d::new(&(vs / "layer_blocks" / i / "0"), ConvSpec::new(out_channels, out_channels, 3, init)))
            .collect();
        let extra = p6p7.map(|from| {
            let c6 = match from {
                P6Source::P5 => out_channels,
                P6Source::C5 => *in_channels.last().unwrap_or(&out_channels),
            };
            let p = vs / "extra_blocks";
            P6P7 {
                p6: Conv2d::new(&(&p / "p6"), ConvSpec::new(c6, out_channels, 3, init).stride(2)),
                p7: Conv2d::new(&(&p / "p7"), ConvSpec::new(out_channels, out_channels, 3, init).stride(2)),
                from,
            }
        });
        Fpn { inner_blocks, layer_blocks, extra, out_channels }
    }

    pub fn out_channels(&self) -> i64 {
        self.out_channels
    }

    /// Number of output levels.
    pub fn num_levels(&self) -> usize {
        self.layer_blocks.len() + if self.extra.is_some() { 2 } else { 0 }
    }

    pub fn forward(&self, xs: &[Tensor]) -> Vec<Tensor> {
        let n = xs.len();
        let mut last_inner = self.inner_blocks[n - 1].forward(&xs[n - 1]);
        let mut results: Vec<Tensor> = (0..n).map(|_| Tensor::new()).collect();
        results[n - 1] = self.layer_blocks[n - 1].forward(&last_inner);
        for idx in (0..n - 1).rev() {
            let lateral = self.inner_blocks[idx].forward(&xs[idx]);
            let size = lateral.size();
            let top_down = last_inner.upsample_nearest2d([size[2], size[3]], None, None);
            last_inner = lateral + top_down;
            results[idx] = self.layer_blocks[idx].forward(&last_inner);
        }
        if let Some(e) = &self.extra {
            let src = match e.from {
                P6Source::P5 => &results[n - 1],
                P6Source::C5 => &xs[n - 1],
            };
            let p6 = e.p6.forward(src);
            let p7 = e.p7.forward(&p6.relu());
            results.push(p6);
            results.push(p7);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let fpn = Fpn::new(&vs.root(), &[8, 16, 32], 16, Some(P6Source::C5));
        assert!(vs.variables().contains_key("inner_blocks.2.0.weight"));
        assert_eq!(vs.variables()["extra_blocks.p6.weight"].size(), vec![16, 32, 3, 3]);
        let opts = (Kind::Float, Device::Cpu);
        let xs = [
            Tensor::randn([2, 8, 9, 13], opts),
            Tensor::randn([2, 16, 5, 7], opts),
            Tensor::randn([2, 32, 3, 4], opts),
        ];
        let out = fpn.forward(&xs);
        let sizes: Vec<Vec<i64>> = out.iter().map(|t| t.size()[2..].to_vec()).collect();
        assert_eq!(sizes, vec![vec![9, 13], vec![5, 7], vec![3, 4], vec![2, 2], vec![1, 1]]);
        assert_eq!(fpn.num_levels(), 5);
    }
}
