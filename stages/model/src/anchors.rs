//! Anchor generation as torchvision's `AnchorGenerator` (`models/detection/anchor_utils.py`).
//!
//! Per level, the cell anchors are zero-centred boxes `[-w/2, -h/2, w/2, h/2]` rounded to integers
//! (ties to even, as `torch.round`), ordered aspect ratio-major then size: index `r · S + s`. They are
//! shifted to the top-left corner of every feature-map cell, `(x · stride_w, y · stride_h)`, where
//! `stride = image_size / grid_size` in integer division (torchvision's "cell corner" centring), and
//! ordered by cell (row-major) then cell anchor. Levels are concatenated in order.

use std::collections::HashMap;
use std::sync::Mutex;

use tch::{Device, Kind, Tensor};

use crate::backbone::level_size;
use crate::config::RetinaNetConfig;

/// Anchor generator with a per-(image size, device) cache.
#[derive(Debug)]
pub struct AnchorGenerator {
    /// Per level `[K, 4]` f32 on the CPU.
    cell_anchors: Vec<Tensor>,
    /// Stride exponent of each level (3 for P3 …).
    levels: Vec<u32>,
    cache: Mutex<HashMap<(i64, i64, Device), Tensor>>,
}

impl AnchorGenerator {
    /// `sizes[l]`: anchor sizes (pixels) of level `l`; `levels[l]`: its stride exponent (P3 → 3).
    pub fn new(sizes: &[Vec<f64>], aspect_ratios: &[f64], levels: Vec<u32>) -> AnchorGenerator {
        let cell_anchors = sizes.iter().map(|s| cell_anchors(s, aspect_ratios)).collect();
        AnchorGenerator { cell_anchors, levels, cache: Mutex::new(HashMap::new()) }
    }

    /// torchvision's default generator adapted to the config: sizes `trunc(base · scale)` per level.
    pub fn from_config(cfg: &RetinaNetConfig) -> AnchorGenerator {
        let sizes: Vec<Vec<f64>> = cfg
            .level_anchor_sizes()
            .iter()
            .map(|b| cfg.anchor_scales.iter().map(|k| (b * k).trunc()).collect())
            .collect();
        let levels = (3..3 + sizes.len() as u32).collect();
        AnchorGenerator::new(&sizes, &cfg.anchor_aspect_ratios, levels)
    }

    /// Anchors per location of level `l`.
    pub fn anchors_per_location(&self, level: usize) -> i64 {
        self.cell_anchors[level].size()[0]
    }

    /// Feature-map size `(h, w)` of every level for an input of `h × w` pixels.
    pub fn grid_sizes(&self, h: i64, w: i64) -> Vec<(i64, i64)> {
        self.levels.iter().map(|&l| (level_size(h, l), level_size(w, l))).collect()
    }

    /// Anchors per level (`h_l · w_l · K`).
    pub fn num_anchors_per_level(&self, h: i64, w: i64) -> Vec<i64> {
        self.grid_sizes(h, w).iter().zip(&self.cell_anchors).map(|((gh, gw), c)| gh * gw * c.size()[0]).collect()
    }

    /// All anchors `[A, 4]` (x1, y1, x2, y2; f32) for a `h × w` input on `device`, cached.
    pub fn anchors(&self, h: i64, w: i64, device: Device) -> Tensor {
        let key = (h, w, device);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = cache.get(&key) {
            return a.shallow_clone();
        }
        let per_level: Vec<Tensor> = self
            .grid_sizes(h, w)
            .iter()
            .zip(&self.cell_anchors)
            .map(|(&(gh, gw), base)| {
                let (sh, sw) = (h / gh, w / gw);
                let opts = (Kind::Float, Device::Cpu);
                let sx = Tensor::arange(gw, opts) * sw as f64;
                let sy = Tensor::arange(gh, opts) * sh as f64;
                let grid = Tensor::meshgrid_indexing(&[&sy, &sx], "ij");
                let (yy, xx) = (grid[0].reshape([-1]), grid[1].reshape([-1]));
                let shifts = Tensor::stack(&[&xx, &yy, &xx, &yy], 1);
                (shifts.view([-1, 1, 4]) + base.view([1, -1, 4])).reshape([-1, 4])
            })
            .collect();
        let anchors = Tensor::cat(&per_level, 0).to_device(device);
        cache.insert(key, anchors.shallow_clone());
        anchors
    }
}

/// Zero-centred, rounded cell anchors `[R·S, 4]` for sizes `S` and aspect ratios (h/w) `R`.
pub fn cell_anchors(sizes: &[f64], aspect_ratios: &[f64]) -> Tensor {
    let opts = (Kind::Float, Device::Cpu);
    let scales = Tensor::from_slice(&sizes.iter().map(|&s| s as f32).collect::<Vec<_>>());
    let ratios = Tensor::from_slice(&aspect_ratios.iter().map(|&r| r as f32).collect::<Vec<_>>());
    let h_ratios = ratios.sqrt();
    let w_ratios = Tensor::ones([1], opts) / &h_ratios;
    let ws = (w_ratios.unsqueeze(1) * scales.unsqueeze(0)).view([-1]);
    let hs = (h_ratios.unsqueeze(1) * scales.unsqueeze(0)).view([-1]);
    (Tensor::stack(&[-&ws, -&hs, ws, hs], 1) / 2.0).round()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_cell_anchors() {
        // torchvision: AnchorGenerator(((32, 40, 50),), ((0.5, 1.0, 2.0),)).cell_anchors[0]
        let c = cell_anchors(&[32.0, 40.0, 50.0], &[0.5, 1.0, 2.0]);
        let v: Vec<f32> = Vec::try_from(c.reshape([-1])).unwrap();
        #[rustfmt::skip]
        let expected = [
            -23., -11., 23., 11., -28., -14., 28., 14., -35., -18., 35., 18.,
            -16., -16., 16., 16., -20., -20., 20., 20., -25., -25., 25., 25.,
            -11., -23., 11., 23., -14., -28., 14., 28., -18., -35., 18., 35.,
        ];
        assert_eq!(v, expected);
    }

    #[test]
    fn default_sizes_and_layout() {
        let cfg = RetinaNetConfig::default();
        let g = AnchorGenerator::from_config(&cfg);
        // 128 × 160: grids 16×20, 8×10, 4×5, 2×3, 1×2; torchvision strides 128/2 = 64, 160/3 = 53 at P6
        assert_eq!(g.grid_sizes(128, 160), vec![(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]);
        let a = g.anchors(128, 160, Device::Cpu);
        let n: i64 = g.num_anchors_per_level(128, 160).iter().sum();
        assert_eq!(a.size(), vec![n, 4]);
        assert_eq!(n, (320 + 80 + 20 + 6 + 2) * 9);
        // second cell of P3 is shifted by the stride 8 in x
        let first: Vec<f32> = Vec::try_from(a.get(9)).unwrap();
        let zero: Vec<f32> = Vec::try_from(a.get(0)).unwrap();
        assert_eq!(first[0] - zero[0], 8.0);
        // P6 second column: shift 53
        let p6 = (320 + 80 + 20) * 9;
        let x0 = f64::try_from(a.get(p6).get(0)).unwrap();
        let x1 = f64::try_from(a.get(p6 + 9).get(0)).unwrap();
        assert_eq!(x1 - x0, 53.0);
        // the sizes are truncated as torchvision's int(x * 2 ** (k / 3))
        let sizes: Vec<f64> = cfg
            .level_anchor_sizes()
            .iter()
            .flat_map(|b| cfg.anchor_scales.iter().map(move |k| (b * k).trunc()))
            .collect();
        assert_eq!(&sizes[..6], &[32.0, 40.0, 50.0, 64.0, 80.0, 101.0]);
        // cached
        let b = g.anchors(128, 160, Device::Cpu);
        assert_eq!(a.data_ptr(), b.data_ptr());
    }
}
