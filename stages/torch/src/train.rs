//! The train stage: RetinaNet training on the sample stage's plan, fed by the patch loader, with
//! per-epoch validation (loss and F1 on the validation patches), best/last checkpoints, a Parquet
//! metrics table, a TensorBoard event file and loss-curve PNGs. Resumable: each finished epoch
//! commits weights, optimiser state and metrics together in the stage's resume directory (see
//! `checkpoint.rs`), and a run with the same key continues from there exactly as if it had not
//! been interrupted.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use engine::{StageContext, StageError};
use midog_data::loader::{AugmentConfig, LoaderConfig, PatchLoader};
use midog_model::{LossScaler, Precision};
use stages::artifact::tables::TableBuilder;
use stages::artifact::{DatasetManifest, SamplePlan};
use tch::{Device, Tensor};
use torch_stage_defs::device::loader_threads;
use torch_stage_defs::lr_schedule::lr_at;
use torch_stage_defs::train::TrainParams;

use crate::batch_tensor::TensorBatch;
use crate::checkpoint::{self, Best, Checkpoints, Committed, MetricsRow, StepRow, TrainState};
use crate::device;
use crate::fault;
use crate::image_set::{ImageSet, labelled_targets};
use crate::optim::FlatOptimizer;
use crate::tensorboard::EventWriter;
use crate::validate::{ValidationResult, validate};

fn model_err(e: midog_model::Error) -> StageError {
    StageError::domain(e)
}

/// Reads a panic payload; libtorch errors (e.g. CUDA out of memory) arrive as panics from tch.
pub fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown error".into())
}

pub fn run(p: &TrainParams, ctx: &StageContext) -> Result<(), StageError> {
    let device = device::resolve(&p.device, &ctx.devices).map_err(StageError::msg)?;
    tch::set_num_threads(ctx.threads as i32);
    tch::manual_seed(p.seed as i64);
    let plan = SamplePlan::load(ctx.input("sample")?)?;
    let dataset = DatasetManifest::load(ctx.ancestor("dataset")?)?;
    let mut cfg = p.model.clone();
    if let Some(w) = &cfg.trunk().backbone_weights {
        cfg.trunk_mut().backbone_weights = Some(ctx.params_dir.join(w));
    }
    let (vs, net) = midog_model::build_detector(&cfg, device).map_err(model_err)?;
    let channels_last = device.is_cuda();
    if channels_last {
        midog_model::precision::to_channels_last(&vs);
    }
    let mut opt = FlatOptimizer::new(&vs, p.optimizer, p.weight_decay, p.momentum);
    tracing::info!("training on {} with {} parameters", device::describe(device), opt.parameters());

    let resume = ctx.resume_dir()?.to_path_buf();
    let checkpoints = Checkpoints::new(&resume);
    let mut last = checkpoints.latest()?;
    let mut state = TrainState::default();
    if let Some(c) = &last {
        let weights = c.dir.join(checkpoint::LAST);
        let (tensors, _) = midog_model::weights::read_safetensors(&weights).map_err(model_err)?;
        midog_model::weights::load_state_dict(&vs, tensors, &weights, &[]).map_err(model_err)?;
        opt.load(&c.dir.join(checkpoint::OPTIMIZER)).map_err(StageError::msg)?;
        state = c.state.clone();
        tracing::info!("resuming after epoch {} of {} (from {})", state.epochs_done, p.epochs, c.dir.display());
    }

    let patch = plan.recipe.patch_size;
    let train_set = ImageSet::new(plan.train.iter().map(|i| i.id), &dataset, &plan)?;
    let mut val_set = ImageSet::new(plan.val_patches.iter().map(|v| v.image_id), &dataset, &plan)?;
    let mut dg = crate::domain_training::prepare(p, ctx, &dataset, &train_set, &mut val_set, device)?;
    if let (Some(t), Some(c)) = (dg.trainer.as_mut(), &last) {
        t.load(&c.dir)?;
    }
    let unlabelled_per_batch = dg.unlabelled_per_batch();
    let checkpoint_meta = match &dg.stain {
        Some(r) => r.metadata()?,
        None => HashMap::new(),
    };
    let val_batches = val_set.batches(&plan.val_patches, p.batch_size);
    let steps_per_epoch = plan.epoch(0).len().div_ceil(p.batch_size) as u64;
    let total_steps = steps_per_epoch * p.epochs as u64;
    let precision = p.precision;
    let mut scaler = LossScaler::new(precision);
    let threads = loader_threads(p.loader_threads, ctx.threads, device.is_cuda());
    let augment = AugmentConfig {
        flips: p.augment.flips,
        rot90: p.augment.rot90,
        stain_jitter: p.augment.stain_jitter as f32,
        brightness: p.augment.brightness as f32,
        contrast: p.augment.contrast as f32,
        scale_jitter: p.augment.scale_jitter as f32,
        fourier: dg.fourier,
    };
    let tb_dir = resume.join("tensorboard");
    std::fs::create_dir_all(&tb_dir).map_err(|e| StageError::io(&tb_dir, e))?;
    let mut events = EventWriter::create(&tb_dir).map_err(|e| StageError::io(&tb_dir, e))?;
    tracing::info!("live TensorBoard: tensorboard --logdir {}", tb_dir.display());
    let live_events = events.path.clone();

    ctx.progress().start(total_steps, "training");
    ctx.progress().set(state.global_step);
    for epoch in state.epochs_done..p.epochs {
        let epoch_start = Instant::now();
        let mut batches = train_set.batches(&plan.epoch(epoch), p.batch_size);
        let n_images: usize = batches.iter().map(Vec::len).sum();
        if unlabelled_per_batch > 0 {
            let extra = crate::domain_training::unlabelled_patches(
                &dg.unlabelled_sizes,
                dg.first_unlabelled,
                patch,
                unlabelled_per_batch,
                batches.len(),
                p.seed,
                epoch,
            );
            for (batch, more) in batches.iter_mut().zip(extra) {
                batch.extend(more);
            }
        }
        let n_batches = batches.len();
        let config = LoaderConfig {
            patch_size: patch,
            threads,
            seed: stages::artifact::sample_plan::mix(p.seed, epoch as u64),
            augment,
            prefetch_batches: 4,
        };
        let b = (p.batch_size + unlabelled_per_batch) as i64;
        let loader = PatchLoader::start(dg.images.clone(), batches, config, move |_| {
            TensorBatch::allocate(b, patch as i64, device)
        })
        .map_err(StageError::domain)?;
        let mut step_losses: Vec<Tensor> = Vec::with_capacity(steps_per_epoch as usize);
        let mut epoch_steps: Vec<StepRow> = Vec::new();
        let mut window_start = 0;
        let mut last_lr = p.lr;
        for batch in loader {
            ctx.check_cancelled()?;
            let batch = batch.map_err(StageError::domain)?;
            let n = batch.specs.len() as i64;
            let pixels = midog_model::transform::upload(&batch.pixels.tensor.narrow(0, 0, n), device);
            let images = net.normalize(&pixels, channels_last);
            let labelled = batch.specs.len() - unlabelled_per_batch.min(batch.specs.len());
            let targets = labelled_targets(&batch.boxes, labelled, cfg.trunk().num_classes, device)?;
            last_lr = lr_at(p.schedule, p.lr, state.global_step, total_steps, p.warmup_steps);
            let domain = match dg.trainer.as_mut() {
                Some(trainer) => {
                    let scanners: Vec<&str> = batch.specs.iter().map(|s| dg.scanners[s.image].as_str()).collect();
                    let labels = trainer.labels(&scanners, device)?;
                    let lambda = trainer.params.lambda(state.global_step as f64 / total_steps.max(1) as f64);
                    Some(crate::domain_training::DomainBatch { trainer, labels, lambda })
                }
                None => None,
            };
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::domain_training::train_step(
                    net.as_ref(),
                    &mut opt,
                    &vs,
                    &images,
                    &targets,
                    labelled as i64,
                    domain,
                    precision,
                    &mut scaler,
                    last_lr,
                    p.grad_clip,
                )
            }));
            let losses = match step {
                Ok(l) => l,
                Err(panic) => return Err(step_failure(&panic_message(&panic), p, epoch, state.global_step, &resume)),
            };
            step_losses.push(losses);
            state.global_step += 1;
            ctx.progress().inc(1);
            let io = |e| StageError::io(&live_events, e);
            events.scalar("lr", state.global_step as i64, last_lr as f32).map_err(io)?;
            if step_losses.len().is_multiple_of(p.log_every as usize) || step_losses.len() == n_batches {
                // One small transfer per window: the means of its losses, computed on the device.
                let row = window_means(&step_losses[window_start..], state.global_step)?;
                write_step_events(&mut events, &row).map_err(io)?;
                epoch_steps.push(row);
                window_start = step_losses.len();
            }
            if state.global_step.is_multiple_of(20) {
                // One read every 20 steps for the progress line (the loss stays on the device
                // otherwise); a diverged loss stops the stage here rather than at the epoch's end.
                let l = step_losses.last().map(|t| t.double_value(&[0])).unwrap_or(f64::NAN);
                if !l.is_finite() {
                    let values = read_losses(&step_losses)?;
                    let rows: Vec<&[f32]> = values.chunks(LOSS_COLUMNS).collect();
                    check_finite(&rows, epoch, state.global_step, last.as_ref(), p)?;
                }
                ctx.progress().set_message(&format!("epoch {}/{} loss {l:.3}", epoch + 1, p.epochs));
            }
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let values = read_losses(&step_losses)?;
        let rows: Vec<&[f32]> = values.chunks(LOSS_COLUMNS).collect();
        check_finite(&rows, epoch, state.global_step, last.as_ref(), p)?;
        if fault::action_at("trained", epoch + 1) == Some(fault::Action::Nan) {
            let _guard = tch::no_grad_guard();
            for mut v in vs.trainable_variables() {
                let _ = v.fill_(f64::NAN);
            }
        }
        let mean = |i: usize| rows.iter().map(|r| r[i] as f64).sum::<f64>() / rows.len().max(1) as f64;
        let validate_now = (epoch + 1) % p.val_every == 0 || epoch + 1 == p.epochs;
        let val: Option<ValidationResult> = if validate_now && !val_batches.is_empty() {
            Some(validate(
                net.as_ref(),
                &val_set,
                val_batches.clone(),
                patch,
                device,
                precision,
                channels_last,
                threads,
                cfg.trunk().num_classes,
            )?)
        } else {
            None
        };
        let row = MetricsRow {
            epoch: epoch + 1,
            step: state.global_step,
            lr: last_lr,
            loss: mean(0),
            cls_loss: mean(1),
            box_loss: mean(2),
            val_loss: val.as_ref().map(|v| v.loss),
            val_f1: val.as_ref().map(|v| v.f1),
            val_threshold: val.as_ref().map(|v| v.threshold),
            img_per_s: n_images as f64 / train_seconds,
            seconds: epoch_start.elapsed().as_secs_f64(),
            domain_loss: dg.trainer.is_some().then(|| mean(3)),
            domain_accuracy: dg.trainer.is_some().then(|| mean(4)),
        };
        tracing::info!(
            "epoch {}/{}: loss {:.4} (cls {:.4}, box {:.4}), val loss {}, val F1 {}, {:.1} img/s",
            row.epoch,
            p.epochs,
            row.loss,
            row.cls_loss,
            row.box_loss,
            fmt(row.val_loss),
            fmt(row.val_f1),
            row.img_per_s
        );
        // Weights whose validation loss is not finite are never committed: the last committed
        // checkpoint stays the last good one.
        if let Some(v) = row.val_loss.filter(|v| !v.is_finite()) {
            return Err(StageError::msg(format!(
                "the validation loss became {v} after epoch {} (its training loss, {:.4}, was finite: the \
                 weights diverged in the epoch's last steps); {}. {}",
                row.epoch,
                row.loss,
                last_good(last.as_ref()),
                divergence_advice(p)
            )));
        }
        write_events(&mut events, &row).map_err(|e| StageError::io(&events.path, e))?;

        // Commit the finished epoch: weights, optimiser state and counters together.
        let improved = match (row.val_f1, state.best_f1) {
            (Some(f), Some(b)) => f > b,
            (Some(_), None) => true,
            (None, _) => state.best_epoch.is_none(),
        };
        if improved {
            state.best_f1 = row.val_f1.or(state.best_f1);
            state.best_epoch = Some(row.epoch);
        }
        state.epochs_done = epoch + 1;
        state.rows.push(row);
        state.steps.extend(epoch_steps);
        let weights =
            midog_model::weights::checkpoint_bytes(&vs, &net.config(), &checkpoint_meta).map_err(model_err)?;
        let optimizer = opt.to_bytes().map_err(model_err)?;
        let previous_best = last.as_ref().map(|c| c.dir.join(checkpoint::BEST));
        let best = match (&previous_best, improved) {
            (Some(p), false) => Best::Previous(p),
            _ => Best::ThisEpoch,
        };
        let extra = match &dg.trainer {
            Some(t) => t.to_files()?,
            None => Vec::new(),
        };
        let dir = checkpoints.commit(&state, &weights, &optimizer, best, &extra)?;
        last = Some(Committed { dir, state: state.clone() });
    }
    let Some(last) = last else { return Err(StageError::msg("training ran no epoch")) };
    let lr_of_step = |k: u64| lr_at(p.schedule, p.lr, k, total_steps, p.warmup_steps);
    finish(ctx, &last, &lr_of_step)
}

/// The mean losses of a logging window, ending at global step `step`.
fn window_means(losses: &[Tensor], step: u64) -> Result<StepRow, StageError> {
    let means = Tensor::stack(losses, 0).mean_dim(0, false, tch::Kind::Float).to_device(Device::Cpu);
    let v = Vec::<f32>::try_from(means).map_err(|e| StageError::msg(e.to_string()))?;
    Ok(StepRow { step, loss: v[0] as f64, cls_loss: v[1] as f64, box_loss: v[2] as f64 })
}

/// Where a diverged training can restart from.
fn last_good(last: Option<&Committed>) -> String {
    match last {
        Some(c) => format!(
            "the last good checkpoint is {} (after epoch {})",
            c.dir.join(checkpoint::LAST).display(),
            c.state.epochs_done
        ),
        None => "no epoch finished before, so there is no good checkpoint to go back to".to_string(),
    }
}

/// What to change after a diverged loss, from what this run used (fp32 is only suggested when
/// it was not in use).
fn divergence_advice(p: &TrainParams) -> String {
    let mut tips = vec![format!("lower lr (now {})", p.lr)];
    match p.grad_clip {
        None => tips.push("set grad_clip (e.g. 1.0)".to_string()),
        Some(g) => tips.push(format!("lower grad_clip (now {g})")),
    }
    if p.precision != Precision::Fp32 {
        tips.push(format!("use precision = \"fp32\" (now {:?})", p.precision).to_lowercase());
    }
    let last = tips.pop().unwrap_or_default();
    if tips.is_empty() { format!("Try: {last}") } else { format!("Try: {} or {last}", tips.join(", ")) }
}

/// Values per step: total, classification, box, domain loss, domain accuracy.
const LOSS_COLUMNS: usize = 5;

/// The per-step `[total, classification, box, domain, domain accuracy]` values of an epoch, read
/// in one transfer.
fn read_losses(steps: &[Tensor]) -> Result<Vec<f32>, StageError> {
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let all = Tensor::stack(steps, 0).to_device(Device::Cpu);
    Vec::<f32>::try_from(all.reshape([-1])).map_err(|e| StageError::msg(e.to_string()))
}

/// Stops the stage at the first non-finite loss, naming the epoch, step and last good checkpoint.
fn check_finite(
    rows: &[&[f32]],
    epoch: u32,
    global_step: u64,
    last: Option<&Committed>,
    p: &TrainParams,
) -> Result<(), StageError> {
    let Some(bad) = rows.iter().position(|r| !r[0].is_finite()) else { return Ok(()) };
    let global = global_step - rows.len() as u64 + bad as u64 + 1;
    Err(StageError::msg(format!(
        "the loss became {} at epoch {} step {} (global step {global}); {}. {}",
        rows[bad][0],
        epoch + 1,
        bad + 1,
        last_good(last),
        divergence_advice(p)
    )))
}

fn step_failure(message: &str, p: &TrainParams, epoch: u32, step: u64, resume: &Path) -> StageError {
    if message.contains("out of memory") {
        let smaller = (p.batch_size / 2).max(1);
        StageError::msg(format!(
            "GPU out of memory with batch_size = {} (epoch {}, step {step}); try batch_size = {smaller}{}",
            p.batch_size,
            epoch + 1,
            if p.precision == Precision::Fp32 { " or precision = \"bf16\"" } else { "" }
        ))
    } else {
        StageError::msg(format!(
            "training step failed at epoch {} (global step {step}): {message}\n(the last finished epoch's checkpoint is in {})",
            epoch + 1,
            resume.display()
        ))
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into())
}

/// TensorBoard tags, all against the global step:
///
/// | tag | when |
/// |---|---|
/// | `step/loss`, `step/loss_classification`, `step/loss_box` | every `log_every` steps: the window's mean |
/// | `lr` | every step |
/// | `loss/train`, `loss/train_classification`, `loss/train_box`, `throughput/img_per_s` | every epoch: its means |
/// | `loss/val`, `f1/val_patches` | every validation |
fn write_step_events(w: &mut EventWriter, row: &StepRow) -> std::io::Result<()> {
    let step = row.step as i64;
    w.scalar("step/loss", step, row.loss as f32)?;
    w.scalar("step/loss_classification", step, row.cls_loss as f32)?;
    w.scalar("step/loss_box", step, row.box_loss as f32)
}

/// The epoch's scalars (see [`write_step_events`] for the tags).
fn write_events(w: &mut EventWriter, row: &MetricsRow) -> std::io::Result<()> {
    let step = row.step as i64;
    w.scalar("loss/train", step, row.loss as f32)?;
    w.scalar("loss/train_classification", step, row.cls_loss as f32)?;
    w.scalar("loss/train_box", step, row.box_loss as f32)?;
    w.scalar("throughput/img_per_s", step, row.img_per_s as f32)?;
    if let Some(v) = row.val_loss {
        w.scalar("loss/val", step, v as f32)?;
    }
    if let Some(v) = row.val_f1 {
        w.scalar("f1/val_patches", step, v as f32)?;
    }
    Ok(())
}

/// Publishes checkpoints, metrics, TensorBoard events and plots into the stage's output, all
/// from the last committed checkpoint (so a resumed run publishes what an uninterrupted one does).
fn finish(ctx: &StageContext, last: &Committed, lr_of_step: &dyn Fn(u64) -> f64) -> Result<(), StageError> {
    let (state, out) = (&last.state, ctx.out_dir());
    let ck = out.join("checkpoints");
    std::fs::create_dir_all(&ck).map_err(|e| StageError::io(&ck, e))?;
    for name in [checkpoint::BEST, checkpoint::LAST] {
        let from = last.dir.join(name);
        std::fs::copy(&from, ck.join(name)).map_err(|e| StageError::io(&from, e))?;
    }
    // The event file is written anew from the committed rows: the live one in the resume
    // directory repeats the epochs an interrupted run did twice.
    let tb_out = out.join("tensorboard");
    std::fs::create_dir_all(&tb_out).map_err(|e| StageError::io(&tb_out, e))?;
    let mut events = EventWriter::create(&tb_out).map_err(|e| StageError::io(&tb_out, e))?;
    let tb_path = events.path.clone();
    let io = |e| StageError::io(&tb_path, e);
    for k in 0..state.global_step {
        // Step k's learning rate at x = k + 1 (steps done), as the live file shows it.
        events.scalar("lr", k as i64 + 1, lr_of_step(k) as f32).map_err(io)?;
    }
    for row in &state.steps {
        write_step_events(&mut events, row).map_err(io)?;
    }
    for row in &state.rows {
        write_events(&mut events, row).map_err(io)?;
    }
    let r = &state.rows;
    TableBuilder::new()
        .u32("epoch", r.iter().map(|x| x.epoch).collect())
        .u64("step", r.iter().map(|x| x.step).collect())
        .f64("lr", r.iter().map(|x| x.lr).collect())
        .f64("loss", r.iter().map(|x| x.loss).collect())
        .f64("cls_loss", r.iter().map(|x| x.cls_loss).collect())
        .f64("box_loss", r.iter().map(|x| x.box_loss).collect())
        .opt_f64("val_loss", r.iter().map(|x| x.val_loss).collect())
        .opt_f64("val_f1", r.iter().map(|x| x.val_f1).collect())
        .opt_f64("val_threshold", r.iter().map(|x| x.val_threshold).collect())
        .f64("img_per_s", r.iter().map(|x| x.img_per_s).collect())
        .f64("seconds", r.iter().map(|x| x.seconds).collect())
        .opt_f64("domain_loss", r.iter().map(|x| x.domain_loss).collect())
        .opt_f64("domain_accuracy", r.iter().map(|x| x.domain_accuracy).collect())
        .write(&out.join("metrics.parquet"))?;
    let epochs = |f: fn(&MetricsRow) -> Option<f64>| -> Vec<(f64, f64)> {
        r.iter().filter_map(|x| f(x).map(|v| (x.epoch as f64, v))).collect()
    };
    let plot_err = |e: plot::PlotError| StageError::msg(format!("drawing the loss curve: {e}"));
    plot::LineChart::new("Training and validation loss")
        .x_label("epoch")
        .y_label("loss")
        .markers(true)
        .series("train", epochs(|x| Some(x.loss)))
        .series("validation", epochs(|x| x.val_loss))
        .save_png(out.join("loss.png"), 720, 480)
        .map_err(plot_err)?;
    plot::LineChart::new("Validation F1 (patches, best threshold)")
        .x_label("epoch")
        .y_label("F1")
        .y_range(0.0, 1.02)
        .markers(true)
        .series("validation F1", epochs(|x| x.val_f1))
        .save_png(out.join("val_f1.png"), 720, 480)
        .map_err(plot_err)?;
    if let Some(last) = r.last() {
        ctx.set_summary("final_loss", last.loss);
        ctx.set_summary("img_per_s", r.iter().map(|x| x.img_per_s).sum::<f64>() / r.len() as f64);
    }
    if let Some(f) = state.best_f1 {
        ctx.set_summary("best_val_f1", f);
    }
    if let Some(e) = state.best_epoch {
        ctx.set_summary("best_epoch", e);
    }
    Ok(())
}
