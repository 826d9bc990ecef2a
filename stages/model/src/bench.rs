//! Synthetic training targets for benchmarks and tests (`pipeline bench train` measures the
//! stage's own training step; see `stages/torch/src/bench.rs`).

use tch::Device;

use crate::Error;
use crate::loss::Targets;

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
