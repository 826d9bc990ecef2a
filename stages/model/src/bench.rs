//! Training-step micro-benchmark on synthetic tensors (used by `pipeline bench train`). The Python
//! counterpart `stages/model/parity/bench_torchvision.py` measures torchvision's RetinaNet on the same
//! architecture, batch and size.

use std::time::Instant;

use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor, nn};

use crate::Error;
use crate::config::RetinaNetConfig;
use crate::loss::Targets;
use crate::precision::{LossScaler, Precision, to_channels_last};
use crate::retinanet::RetinaNet;
use crate::train_step::train_step;

/// Benchmark settings beyond the architecture.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub precision: Precision,
    /// Channels-last inputs and conv weights.
    pub channels_last: bool,
    /// Untimed steps before measuring (allocator and cuDNN warm-up).
    pub warmup: usize,
    /// Adam learning rate.
    pub lr: f64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions { precision: Precision::Fp32, channels_last: false, warmup: 2, lr: 1e-4 }
    }
}

/// Synthetic targets: 50 px boxes, image 0 without boxes (when `batch > 1`), others 1–4 boxes.
pub fn synthetic_targets(batch: i64, size: i64, num_classes: i64, device: Device) -> Result<Targets, Error> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |m: i64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) % (m.max(1) as u64)) as i64
    };
    let mut boxes = Vec::new();
    let mut labels = Vec::new();
    for i in 0..batch {
        let n = if i == 0 && batch > 1 { 0 } else { 1 + i % 4 };
        let (mut b, mut l) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let side = 50.min(size - 1) as f32;
            let x = next(size - side as i64) as f32;
            let y = next(size - side as i64) as f32;
            b.push([x, y, x + side, y + side]);
            l.push(next(num_classes));
        }
        boxes.push(b);
        labels.push(l);
    }
    Targets::from_lists(&boxes, &labels, num_classes, device)
}

/// Training images per second of `steps` full training steps (normalisation from uint8, forward, loss,
/// backward, Adam) on synthetic `batch × 3 × size × size` inputs, fp32.
pub fn bench_train_step(
    cfg: &RetinaNetConfig,
    batch: i64,
    size: i64,
    steps: usize,
    device: Device,
) -> Result<f64, Error> {
    bench_train_step_with(cfg, batch, size, steps, device, &BenchOptions::default())
}

/// [`bench_train_step`] with explicit precision, layout and warm-up.
pub fn bench_train_step_with(
    cfg: &RetinaNetConfig,
    batch: i64,
    size: i64,
    steps: usize,
    device: Device,
    opts: &BenchOptions,
) -> Result<f64, Error> {
    if batch < 1 || size < 32 || steps < 1 {
        return Err(Error::Config(format!(
            "bench needs batch ≥ 1, size ≥ 32, steps ≥ 1; got {batch}, {size}, {steps}"
        )));
    }
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let net = RetinaNet::new(&vs.root(), cfg)?;
    if opts.channels_last {
        to_channels_last(&vs);
    }
    let mut opt = nn::Adam::default().build(&vs, opts.lr)?;
    let mut scaler = LossScaler::new(opts.precision);
    let images_u8 = Tensor::randint(256, [batch, size, size, 3], (Kind::Uint8, device));
    let targets = synthetic_targets(batch, size, cfg.num_classes, device)?;
    let anchors = net.anchors_for(size, size, device);
    let mut step = || {
        let images = net.normalize(&images_u8, opts.channels_last);
        train_step(&net, &mut opt, &images, &anchors, &targets, opts.precision, &mut scaler)
    };
    for _ in 0..opts.warmup {
        let out = step();
        f64::try_from(&out.losses.total)?;
    }
    let start = Instant::now();
    let mut last = None;
    for _ in 0..steps {
        last = Some(step());
    }
    if let Some(out) = last {
        let loss = f64::try_from(&out.losses.total)?; // the only host sync of the timed loop
        tracing::debug!(loss, "bench train step");
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((batch as f64 * steps as f64) / secs.max(1e-9))
}
