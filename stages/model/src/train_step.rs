//! One optimisation step: forward, batched loss, backward, optimiser update — without host
//! synchronisation for fp32/bf16 (fp16 reads one overflow flag, see `precision.rs`).

use tch::{Kind, Tensor, nn};

use crate::loss::{Losses, Targets};
use crate::precision::{LossScaler, Precision, PrecisionExt};
use crate::retinanet::RetinaNet;

/// Detached losses of the step (read them when needed: reading synchronises).
#[derive(Debug)]
pub struct StepOutput {
    pub losses: Losses,
    /// False when fp16 loss scaling found inf/NaN gradients and skipped the update.
    pub stepped: bool,
}

/// Runs one training step on a normalised batch.
///
/// * `images [N, 3, H, W]` f32 (see [`RetinaNet::normalize`]); cast per `precision`
/// * `anchors [A, 4]` from [`RetinaNet::anchors_for`] (computed once, not per step)
/// * `targets`: padded boxes `[N, M, 4]`, labels `[N, M]`, valid `[N, M]` on the device
/// * `scaler`: [`LossScaler::new`]`(precision)`; only used for fp16
pub fn train_step(
    net: &RetinaNet,
    opt: &mut nn::Optimizer,
    images: &Tensor,
    anchors: &Tensor,
    targets: &Targets,
    precision: Precision,
    scaler: &mut LossScaler,
) -> StepOutput {
    let out = precision.run(|| net.forward_t(&precision.prepare_input(images), true));
    let losses = net.loss(&out.to_kind(Kind::Float), anchors, targets);
    let stepped = if scaler.enabled() {
        opt.zero_grad();
        scaler.scale_loss(&losses.total).backward();
        let vars = opt.trainable_variables();
        let found_inf = scaler.unscale_(&vars).map(|f| bool::try_from(&f).unwrap_or(true)).unwrap_or(false);
        let step = scaler.update(found_inf);
        if step {
            opt.step();
        }
        step
    } else {
        opt.backward_step(&losses.total);
        true
    };
    StepOutput {
        losses: Losses {
            classification: losses.classification.detach(),
            box_regression: losses.box_regression.detach(),
            total: losses.total.detach(),
        },
        stepped,
    }
}
