//! `pipeline bench train` and `pipeline bench infer`: throughput of our training step and of
//! whole-image inference, measured the way the stages run them. Side-by-side Python baselines:
//! stages/model/parity/bench_torchvision.py (training) and stages/torch/bench/torchvision_infer.py
//! (inference over OpenSlide tiles).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use midog_data::TiffImage;
use midog_data::loader::{AugmentConfig, LoaderConfig, LoaderImage, PatchLoader, random_patch_plan};
use midog_model::{DetectorConfig, LossScaler, Precision};
use stages::cli::{InferBenchArgs, TrainBenchArgs};
use tch::Device;
use torch_stage_defs::train::Optimizer;

use crate::batch_tensor::TensorBatch;
use crate::device;
use crate::optim::FlatOptimizer;
use crate::tiled::TiledDetector;

fn precision(s: &str) -> Result<Precision> {
    s.parse().map_err(|e| anyhow::anyhow!("--precision: {e}"))
}

fn model_config(model: Option<&Path>, backbone: &str) -> Result<DetectorConfig> {
    let mut cfg = match model {
        Some(p) => crate::detect::read_model_toml(p)?,
        None => DetectorConfig::default(),
    };
    if model.is_none() {
        cfg.trunk_mut().backbone = serde_json::from_value(serde_json::Value::String(backbone.into()))
            .map_err(|_| anyhow::anyhow!("--backbone {backbone}: use resnet18, resnet34 or resnet50"))?;
    }
    Ok(cfg)
}

/// The pyramid of a RetinaNet (`p3p7`, `p3p5`); a CenterNet always builds P3–P5.
fn fpn_levels(cfg: &DetectorConfig) -> String {
    match cfg {
        DetectorConfig::RetinaNet(r) => format!("{:?}", r.fpn_levels).to_lowercase(),
        DetectorConfig::CenterNet(_) => "p3p5".into(),
    }
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// GPU utilisation sampled by nvidia-smi every 100 ms from `start` to `finish`: started at the
/// first timed step, so model construction and warm-up do not dilute the figure.
struct GpuSampler(Option<std::process::Child>);

impl GpuSampler {
    fn start(device: Device) -> GpuSampler {
        let Device::Cuda(i) = device else { return GpuSampler(None) };
        let child = std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100", "-i", &i.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok();
        GpuSampler(child)
    }

    /// Mean utilisation in percent, if nvidia-smi ran and reported anything.
    fn finish(self) -> Option<f64> {
        let mut child = self.0?;
        let _ = child.kill();
        let out = child.wait_with_output().ok()?;
        let samples: Vec<f64> =
            String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
        (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64)
    }
}

/// Milliseconds per step in each phase of a training step, each phase closed by a device sync
/// (so the phases add up to more than an unsynchronised step): where the time of a step goes.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
struct PhaseTimes {
    input_ms: f64,
    forward_loss_ms: f64,
    backward_ms: f64,
    optimizer_ms: f64,
}

pub fn train(a: &TrainBenchArgs) -> Result<()> {
    let dev = device::resolve(&a.device, &[]).map_err(anyhow::Error::msg)?;
    if a.no_cudnn_benchmark {
        tch::Cuda::cudnn_set_benchmark(false);
    }
    let precision = precision(&a.precision)?;
    let cfg = model_config(a.model.as_deref(), &a.backbone)?;
    tch::manual_seed(0);
    let (vs, net) = midog_model::build_detector(&cfg, dev)?;
    let channels_last = dev.is_cuda();
    if channels_last {
        midog_model::precision::to_channels_last(&vs);
    }
    let mut opt = FlatOptimizer::new(&vs, Optimizer::Adam, 0.0, 0.9);
    let mut scaler = LossScaler::new(precision);
    let mut domain = if a.domain_adversarial {
        let p = torch_stage_defs::train::TrainParams {
            model: cfg.clone(),
            optimizer: Optimizer::Adam,
            ..Default::default()
        };
        let da = torch_stage_defs::domain_generalization::DomainAdversarialParams::default();
        let trainer = crate::domain_training::DomainTrainer::new(&p, &da, vec!["A".into(), "B".into()], dev)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let names: Vec<&str> = (0..a.batch).map(|i| if i % 2 == 0 { "A" } else { "B" }).collect();
        let labels = trainer.labels(&names, dev).map_err(|e| anyhow::anyhow!("{e}"))?;
        Some((trainer, labels))
    } else {
        None
    };
    let size = a.size as i64;
    let total = a.warmup + a.steps;
    let mut timed_start = None;
    let mut waited = 0.0;
    let mut run = |opt: &mut FlatOptimizer,
                   scaler: &mut LossScaler,
                   pixels: &tch::Tensor,
                   boxes: &[Vec<[f32; 4]>]|
     -> Result<()> {
        let images = net.normalize(&midog_model::transform::upload(pixels, dev), channels_last);
        let targets =
            crate::image_set::targets_of(boxes, cfg.trunk().num_classes, dev).map_err(|e| anyhow::anyhow!("{e}"))?;
        let labelled = images.size()[0];
        let d = domain.as_mut().map(|(trainer, labels)| crate::domain_training::DomainBatch {
            trainer,
            labels: labels.shallow_clone(),
            lambda: 1.0,
        });
        let _ = crate::domain_training::train_step(
            net.as_ref(),
            opt,
            &vs,
            &images,
            &targets,
            labelled,
            d,
            precision,
            scaler,
            1e-4,
            None,
        );
        Ok(())
    };
    let mut sampler = None;
    let result = (|| -> Result<()> {
        if let Some(dir) = &a.dataset {
            let files = tiff_files(dir)?;
            let images: Vec<LoaderImage> =
                files.iter().map(|p| LoaderImage { path: p.clone(), boxes: vec![], stain: None }).collect();
            let sizes: Vec<(u32, u32)> =
                files.iter().map(|p| TiffImage::open(p).map(|t| (t.width(), t.height()))).collect::<Result<_, _>>()?;
            let plan = random_patch_plan(&sizes, total, a.batch, a.size, 0);
            let config = LoaderConfig {
                patch_size: a.size,
                threads: a.loader_threads,
                seed: 0,
                augment: AugmentConfig::STANDARD,
                prefetch_batches: 4,
            };
            let b = a.batch as i64;
            let loader = PatchLoader::start(images, plan, config, move |_| TensorBatch::allocate(b, size, dev))?;
            let mut it = loader.into_iter();
            for step in 0..total {
                if step == a.warmup {
                    sync(dev);
                    sampler = Some(GpuSampler::start(dev));
                    timed_start = Some(Instant::now());
                }
                let t = Instant::now();
                let batch = it.next().context("the loader ended early")??;
                if step >= a.warmup {
                    waited += t.elapsed().as_secs_f64();
                }
                let boxes = vec![vec![[100.0, 100.0, 150.0, 150.0]]; a.batch];
                run(&mut opt, &mut scaler, &batch.pixels.tensor, &boxes)?;
            }
        } else {
            let pixels = tch::Tensor::randint(256, [a.batch as i64, size, size, 3], (tch::Kind::Uint8, Device::Cpu));
            let boxes: Vec<Vec<[f32; 4]>> = (0..a.batch)
                .map(|i| {
                    (0..3)
                        .map(|k| {
                            let o = (40 + 60 * k + 7 * i) as f32;
                            [o, o, o + 50.0, o + 50.0]
                        })
                        .collect()
                })
                .collect();
            for step in 0..total {
                if step == a.warmup {
                    sync(dev);
                    sampler = Some(GpuSampler::start(dev));
                    timed_start = Some(Instant::now());
                }
                run(&mut opt, &mut scaler, &pixels, &boxes)?;
            }
        }
        sync(dev);
        Ok(())
    })();
    let secs = timed_start.map(|s| s.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
    let util = sampler.and_then(GpuSampler::finish);
    result?;
    let phases = if a.breakdown && a.dataset.is_none() {
        Some(phase_breakdown(net.as_ref(), &mut opt, &cfg, a, dev, precision)?)
    } else {
        None
    };
    let source = if a.dataset.is_some() {
        format!("real loader ({} threads)", a.loader_threads)
    } else {
        "synthetic tensors".into()
    };
    let img_s = (a.steps * a.batch) as f64 / secs;
    let report = serde_json::json!({
        "what": "train", "backbone": format!("{:?}", cfg.trunk().backbone).to_lowercase(), "fpn_levels": fpn_levels(&cfg),
        "batch": a.batch, "size": a.size, "precision": a.precision, "device": device::describe(dev),
        "gpu_name": gpu_name(dev), "input": source, "steps": a.steps, "seconds": secs, "img_per_s": img_s,
        "loader_wait_fraction": if a.dataset.is_some() { Some(waited / secs) } else { None },
        "gpu_utilisation_percent": util, "cudnn_benchmark": dev.is_cuda() && !a.no_cudnn_benchmark,
        "phases_ms": phases,
    });
    if a.json {
        println!("{report}");
    } else {
        println!(
            "train step: {} FPN {}, batch {} × {} px, {}, {} on {}: {:.1} img/s{}{}",
            report["backbone"].as_str().unwrap_or(""),
            report["fpn_levels"].as_str().unwrap_or(""),
            a.batch,
            a.size,
            a.precision,
            source,
            device::describe(dev),
            img_s,
            a.dataset
                .as_ref()
                .map(|_| format!(", waiting for the loader {:.0} % of the time", 100.0 * waited / secs))
                .unwrap_or_default(),
            util.map(|u| format!(", GPU utilisation {u:.0} %")).unwrap_or_default()
        );
        if let Some(p) = phases {
            println!(
                "  per step, each phase synchronised: input {:.2} ms, forward + loss {:.2} ms, backward {:.2} ms, optimiser {:.2} ms",
                p.input_ms, p.forward_loss_ms, p.backward_ms, p.optimizer_ms
            );
        }
    }
    Ok(())
}

/// Times `a.steps` further steps on synthetic tensors phase by phase (see [`PhaseTimes`]).
fn phase_breakdown(
    net: &dyn midog_model::Detector,
    opt: &mut FlatOptimizer,
    cfg: &DetectorConfig,
    a: &TrainBenchArgs,
    dev: Device,
    precision: Precision,
) -> Result<PhaseTimes> {
    let size = a.size as i64;
    let pixels = tch::Tensor::randint(256, [a.batch as i64, size, size, 3], (tch::Kind::Uint8, Device::Cpu));
    let boxes: Vec<Vec<[f32; 4]>> =
        (0..a.batch).map(|i| vec![[(40 + 7 * i) as f32, 60.0, (90 + 7 * i) as f32, 110.0]]).collect();
    let channels_last = dev.is_cuda();
    let mut total = PhaseTimes::default();
    let lap = |t: &mut Instant| {
        sync(dev);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        *t = Instant::now();
        ms
    };
    for _ in 0..a.steps {
        sync(dev);
        let mut t = Instant::now();
        let images = net.normalize(&midog_model::transform::upload(&pixels, dev), channels_last);
        let targets =
            crate::image_set::targets_of(&boxes, cfg.trunk().num_classes, dev).map_err(|e| anyhow::anyhow!("{e}"))?;
        total.input_ms += lap(&mut t);
        opt.zero_grad();
        let losses = net.losses(&images, &targets, precision, true);
        total.forward_loss_ms += lap(&mut t);
        losses.total.backward();
        total.backward_ms += lap(&mut t);
        let _ = opt.step(1e-4, None);
        total.optimizer_ms += lap(&mut t);
    }
    let n = a.steps.max(1) as f64;
    Ok(PhaseTimes {
        input_ms: total.input_ms / n,
        forward_loss_ms: total.forward_loss_ms / n,
        backward_ms: total.backward_ms / n,
        optimizer_ms: total.optimizer_ms / n,
    })
}

fn gpu_name(dev: Device) -> Option<String> {
    let Device::Cuda(i) = dev else { return None };
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader", "-i", &i.to_string()])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn tiff_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tif" || e == "tiff"))
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("no .tif/.tiff files in {}", dir.display());
    }
    Ok(v)
}

pub fn infer(a: &InferBenchArgs) -> Result<()> {
    if a.repeats == 0 {
        // the median below needs at least one timed image
        bail!("--repeats 0: give at least 1");
    }
    let dev = device::resolve(&a.device, &[]).map_err(anyhow::Error::msg)?;
    if a.no_cudnn_benchmark {
        tch::Cuda::cudnn_set_benchmark(false);
    }
    let precision = precision(&a.precision)?;
    let (vs, net) = match &a.checkpoint {
        Some(c) => crate::detect::load_model(c, None, dev)?,
        None => {
            tch::manual_seed(0);
            midog_model::build_detector(&DetectorConfig::default(), dev)?
        }
    };
    let channels_last = dev.is_cuda();
    if channels_last {
        midog_model::precision::to_channels_last(&vs);
    }
    let tmp;
    let path = match &a.image {
        Some(p) => p.clone(),
        None => {
            tmp = tempdir()?;
            let scale = (a.width as f64 / 7215.0).max(a.height as f64 / 5412.0).min(1.0);
            let cfg = midog_synth::SynthConfig {
                images_per_scanner: 1,
                scale,
                scanners: vec!["XR".into()],
                ..Default::default()
            };
            midog_synth::generate(&tmp, &cfg, &|_, _| {})?;
            tmp.join("001.tiff")
        }
    };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let detector = TiledDetector {
        net: net.as_ref(),
        device: dev,
        precision,
        tile: a.tile_size,
        overlap: a.overlap,
        batch_size: a.batch_size,
        min_score: 0.05,
        threads: a.threads.unwrap_or(if dev.is_cuda() {
            threads.saturating_sub(1).max(1)
        } else {
            (threads / 2).max(1)
        }),
        channels_last,
    };
    let mut times = Vec::new();
    let mut waits = Vec::new();
    let mut tiles = 0;
    for r in 0..a.repeats + 1 {
        // A fresh tile cache each time: every image is read from its file, as in a real run.
        let tiff = Arc::new(TiffImage::open(&path)?);
        tiles = crate::tile_grid::TileGrid::new(tiff.width(), tiff.height(), a.tile_size, a.overlap).len();
        sync(dev);
        let t = Instant::now();
        let (_, waited) = detector.detect_timed(&tiff, None, &mut |_| true).map_err(anyhow::Error::msg)?;
        sync(dev);
        if r > 0 {
            let secs = t.elapsed().as_secs_f64();
            times.push(secs);
            waits.push(waited / secs);
        }
    }
    let median_of = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let median = median_of(&mut times);
    let decode_wait = median_of(&mut waits);
    let tiff = TiffImage::open(&path)?;
    let report = serde_json::json!({
        "what": "infer", "width": tiff.width(), "height": tiff.height(), "tiles": tiles, "tile_size": a.tile_size,
        "overlap": a.overlap, "batch": a.batch_size, "precision": a.precision, "device": device::describe(dev),
        "gpu_name": gpu_name(dev), "seconds_per_image": median, "repeats": a.repeats,
        "decode_threads": detector.threads, "decode_wait_fraction": decode_wait,
        "cudnn_benchmark": dev.is_cuda() && !a.no_cudnn_benchmark,
    });
    if a.json {
        println!("{report}");
    } else {
        println!(
            "whole-image inference: {} × {} px, {tiles} tiles of {} px, {} on {}: {:.2} s per image (median of {}), waiting for decoded tiles {:.0} % of the time",
            tiff.width(),
            tiff.height(),
            a.tile_size,
            a.precision,
            device::describe(dev),
            median,
            a.repeats,
            100.0 * decode_wait
        );
    }
    Ok(())
}

fn tempdir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("pipeline-bench-infer-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
