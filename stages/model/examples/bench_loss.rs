//! Matching + loss (forward and backward) alone, on random head outputs: the part of the training
//! step that torchvision runs image by image. Counterpart: `bench_torchvision.py --loss-only`.
//!
//! ```text
//! cargo run --release -p midog-model --example bench_loss -- [batch] [size] [iters] [cpu|cuda]
//! ```

use std::time::Instant;

use midog_model::bench::synthetic_targets;
use midog_model::{RetinaNet, RetinaNetConfig};
use tch::{Device, Kind, Tensor, nn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let batch: i64 = arg(0, "16").parse()?;
    let size: i64 = arg(1, "512").parse()?;
    let iters: usize = arg(2, "20").parse()?;
    let device = if arg(3, "cpu") == "cuda" { Device::Cuda(0) } else { Device::Cpu };
    let cfg = RetinaNetConfig::default();
    let vs = nn::VarStore::new(device);
    let net = RetinaNet::new(&vs.root(), &cfg)?;
    let anchors = net.anchors_for(size, size, device);
    let a = anchors.size()[0];
    let targets = synthetic_targets(batch, size, cfg.trunk.num_classes, device)?;
    let cls = (Tensor::randn([batch, a, cfg.trunk.num_classes], (Kind::Float, device)) - 4.0).set_requires_grad(true);
    let reg = (Tensor::randn([batch, a, 4], (Kind::Float, device)) * 0.1).set_requires_grad(true);
    let out = midog_model::HeadOutputs { cls_logits: cls, bbox_regression: reg, num_anchors_per_level: vec![] };
    let run = || {
        let l = net.loss(&out, &anchors, &targets);
        l.total.backward();
        l.total
    };
    f64::try_from(run())?;
    let start = Instant::now();
    let mut last = None;
    for _ in 0..iters {
        last = Some(run());
    }
    if let Some(l) = last {
        f64::try_from(l)?;
    }
    let ms = start.elapsed().as_secs_f64() * 1e3 / iters as f64;
    println!("midog-model loss+backward: {ms:.2} ms/iter (batch {batch}, size {size}, {a} anchors, {device:?})");
    Ok(())
}
