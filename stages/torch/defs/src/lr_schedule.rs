//! Learning-rate schedules over optimisation steps: one-cycle (the MIDOG reference recipe),
//! cosine and constant, each with an optional linear warm-up.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// fastai/PyTorch one-cycle: cosine up from lr/25 to lr over the first 25 % of steps, then cosine down to lr/1e4.
    OneCycle,
    /// Cosine decay from lr to 0 (after the warm-up).
    Cosine,
    /// Constant lr (after the warm-up).
    Constant,
}

/// The learning rate at `step` (0-based) of `total` steps.
pub fn lr_at(schedule: Schedule, base: f64, step: u64, total: u64, warmup: u64) -> f64 {
    let total = total.max(1);
    let t = step.min(total - 1) as f64;
    if warmup > 0 && step < warmup && schedule != Schedule::OneCycle {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let cos = |from: f64, to: f64, frac: f64| {
        to + (from - to) * (1.0 + (std::f64::consts::PI * frac.clamp(0.0, 1.0)).cos()) / 2.0
    };
    match schedule {
        Schedule::Constant => base,
        Schedule::Cosine => {
            let span = (total - warmup.min(total - 1)) as f64;
            cos(base, 0.0, (t - warmup as f64).max(0.0) / span)
        }
        Schedule::OneCycle => {
            let up = ((total as f64) * 0.25).max(1.0);
            if t < up {
                cos(base / 25.0, base, t / up)
            } else {
                cos(base, base / 25.0 / 1e4, (t - up) / (total as f64 - up).max(1.0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_rises_then_falls() {
        let lrs: Vec<f64> = (0..100).map(|s| lr_at(Schedule::OneCycle, 1e-3, s, 100, 0)).collect();
        assert!((lrs[0] - 4e-5).abs() < 1e-9);
        let peak = lrs.iter().cloned().fold(0.0, f64::max);
        assert!((peak - 1e-3).abs() < 1e-5);
        assert!(lrs[99] < 1e-6);
        assert!(lrs[30] > lrs[60] && lrs[60] > lrs[90]);
    }

    #[test]
    fn warmup_is_linear_and_constant_stays() {
        assert!((lr_at(Schedule::Constant, 1.0, 0, 100, 10) - 0.1).abs() < 1e-12);
        assert!((lr_at(Schedule::Constant, 1.0, 9, 100, 10) - 1.0).abs() < 1e-12);
        assert_eq!(lr_at(Schedule::Constant, 1.0, 50, 100, 10), 1.0);
        assert!(lr_at(Schedule::Cosine, 1.0, 99, 100, 10) < 0.01);
        assert!((lr_at(Schedule::Cosine, 1.0, 10, 100, 10) - 1.0).abs() < 1e-12);
    }
}
