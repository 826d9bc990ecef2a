//! Mitotic figures by phase. What makes them mitoses and not merely dark nuclei: condensed
//! chromatin with ragged, hairy outlines (chromosome arms), plates seen edge-on as dark bars,
//! rings seen en face, pairs of plates or clumps moving apart, thread-like prophase chromatin,
//! atypical tripolar and lagging forms, and usually a clear halo of retracted cytoplasm.

use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::cell_drawing::{CellDrawing, CellSpec};
use crate::nucleus::{Blob, Patch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MitoticPhase {
    Prophase,
    Prometaphase,
    Metaphase,
    MetaphaseRing,
    Anaphase,
    Telophase,
    AtypicalTripolar,
    AtypicalLagging,
    AtypicalAsymmetric,
}

impl MitoticPhase {
    /// Phase frequencies; atypical forms make up 22 % as in MIDOG (22–25 %).
    const TABLE: [(MitoticPhase, f64); 9] = [
        (MitoticPhase::Prophase, 0.12),
        (MitoticPhase::Prometaphase, 0.15),
        (MitoticPhase::Metaphase, 0.22),
        (MitoticPhase::MetaphaseRing, 0.04),
        (MitoticPhase::Anaphase, 0.12),
        (MitoticPhase::Telophase, 0.13),
        (MitoticPhase::AtypicalTripolar, 0.07),
        (MitoticPhase::AtypicalLagging, 0.09),
        (MitoticPhase::AtypicalAsymmetric, 0.06),
    ];

    pub fn sample(rng: &mut impl Rng) -> MitoticPhase {
        let mut u: f64 = rng.random();
        for (p, w) in Self::TABLE {
            if u < w {
                return p;
            }
            u -= w;
        }
        MitoticPhase::Metaphase
    }

    pub fn is_atypical(self) -> bool {
        matches!(self, Self::AtypicalTripolar | Self::AtypicalLagging | Self::AtypicalAsymmetric)
    }
}

/// Chromatin of a dividing cell: dark, slightly threaded, ragged at the edge.
fn chromosomes(rng: &mut impl Rng, spec: &CellSpec, cx: f32, cy: f32, rx: f32, ry: f32, angle: f32) -> Blob {
    let n = Normal::new(1.0f32, 0.08).expect("valid normal");
    let mut b = Blob::ellipse(cx, cy, rx, ry, angle, spec.darkness * n.sample(rng).clamp(0.8, 1.2), rng.random());
    b.harmonics = [
        (rng.random_range(0.0..0.08), rng.random_range(0.0..6.3)),
        (rng.random_range(0.0..0.06), rng.random_range(0.0..6.3)),
        (rng.random_range(0.0..0.04), rng.random_range(0.0..6.3)),
    ];
    b.ragged = rng.random_range(0.18..0.38);
    b.ragged_lobes = rng.random_range(10..26);
    b.edge = 0.7;
    b.grain = rng.random_range(0.15..0.3);
    b.grain_px = 0.7 * spec.px_per_um;
    b.threads = 0.5;
    b.eosin = 0.12;
    b
}

fn halo(rng: &mut impl Rng, spec: &CellSpec, rx: f32, ry: f32, angle: f32) -> Patch {
    Patch {
        cx: spec.cx,
        cy: spec.cy,
        rx,
        ry,
        angle,
        edge: 1.5 * spec.px_per_um,
        clear: rng.random_range(0.45..0.75),
        eosin_add: rng.random_range(0.0..0.06),
    }
}

/// Draws a mitotic figure of `phase` centred at the spec's position.
pub fn draw_mitosis(rng: &mut impl Rng, spec: &CellSpec, phase: MitoticPhase) -> CellDrawing {
    let px = spec.px_per_um;
    let a = spec.area_um2;
    let theta: f32 = rng.random_range(0.0..std::f32::consts::PI);
    let (ct, st) = (theta.cos(), theta.sin());
    // Unit vector across the plate (the spindle axis).
    let (ax, ay) = (-st, ct);
    let mut d = CellDrawing::default();
    let (halo_p, halo_r);
    match phase {
        MitoticPhase::Prophase => {
            let r = (a / std::f32::consts::PI).sqrt() * 1.12 * px;
            let asp: f32 = rng.random_range(1.0..1.3);
            let mut b = chromosomes(rng, spec, spec.cx, spec.cy, r * asp.sqrt(), r / asp.sqrt(), theta);
            b.ragged = rng.random_range(0.06..0.14);
            b.ragged_lobes = 18;
            b.threads = 1.0;
            b.grain = rng.random_range(0.45..0.6);
            b.grain_px = 0.9 * px;
            d.blobs.push(b);
            halo_p = 0.5;
            halo_r = (r + 2.5 * px, r + 2.5 * px);
        }
        MitoticPhase::Prometaphase => {
            let n = rng.random_range(4..=7);
            let r0 = (a / std::f32::consts::PI).sqrt() * px;
            let rs = (a / (std::f32::consts::PI * n as f32)).sqrt() * 1.15 * px;
            for _ in 0..n {
                let (rr, phi) = (rng.random_range(0.0f32..1.0).sqrt() * r0 * 0.65, rng.random_range(0.0..6.3f32));
                let asp: f32 = rng.random_range(1.0..1.8);
                let angle = rng.random_range(0.0..6.3);
                let mut b = chromosomes(
                    rng,
                    spec,
                    spec.cx + rr * phi.cos(),
                    spec.cy + rr * phi.sin(),
                    rs * asp.sqrt(),
                    rs / asp.sqrt(),
                    angle,
                );
                b.ragged = rng.random_range(0.25..0.45);
                b.ragged_lobes = rng.random_range(6..12);
                d.blobs.push(b);
            }
            halo_p = 0.75;
            halo_r = (r0 + 3.0 * px, r0 + 3.0 * px);
        }
        MitoticPhase::Metaphase => {
            let asp: f32 = rng.random_range(2.4..3.8);
            let ry = (a / (std::f32::consts::PI * asp)).sqrt() * px;
            let rx = asp * ry;
            d.blobs.push(chromosomes(rng, spec, spec.cx, spec.cy, rx, ry, theta));
            halo_p = 0.85;
            halo_r = (rx + 2.5 * px, rx * 0.85 + 1.0 * px);
        }
        MitoticPhase::MetaphaseRing => {
            let r = (a / std::f32::consts::PI).sqrt() * 1.3 * px;
            let ry = r * rng.random_range(0.85..1.0);
            let mut b = chromosomes(rng, spec, spec.cx, spec.cy, r, ry, theta);
            b.hollow = rng.random_range(0.6..0.8);
            b.ragged = rng.random_range(0.25..0.35);
            d.blobs.push(b);
            halo_p = 0.7;
            halo_r = (r + 2.5 * px, r + 2.5 * px);
        }
        MitoticPhase::Anaphase | MitoticPhase::AtypicalLagging | MitoticPhase::AtypicalAsymmetric => {
            let (share_a, share_b) = match phase {
                MitoticPhase::AtypicalAsymmetric => {
                    let s = rng.random_range(0.62..0.75);
                    (s, 1.0 - s)
                }
                MitoticPhase::AtypicalLagging => (0.42, 0.42),
                _ => (0.5, 0.5),
            };
            let gap = rng.random_range(1.2..4.5) * px;
            let asp: f32 = rng.random_range(2.2..3.2);
            let mut reach = 0.0f32;
            let mut rx_max = 0.0f32;
            let ry_a = (a * share_a / (std::f32::consts::PI * asp)).sqrt() * px;
            let ry_b = (a * share_b / (std::f32::consts::PI * asp)).sqrt() * px;
            let sep = ry_a + ry_b + gap;
            for (share, offset) in [(share_a, -sep * ry_b / (ry_a + ry_b)), (share_b, sep * ry_a / (ry_a + ry_b))] {
                let ry = (a * share / (std::f32::consts::PI * asp)).sqrt() * px;
                let rx = asp * ry;
                let tilt = rng.random_range(-0.15..0.15);
                let mut b = chromosomes(rng, spec, spec.cx + ax * offset, spec.cy + ay * offset, rx, ry, theta + tilt);
                // Plates bow towards their poles.
                b.harmonics[0] = (rng.random_range(0.05..0.12), if offset < 0.0 { 0.0 } else { std::f32::consts::PI });
                d.blobs.push(b);
                reach = reach.max(offset.abs() + ry);
                rx_max = rx_max.max(rx);
            }
            if phase == MitoticPhase::AtypicalLagging {
                let n = rng.random_range(2..=4);
                for _ in 0..n {
                    let r = (a * 0.16 / (n as f32 * std::f32::consts::PI)).sqrt() * px;
                    let along = rng.random_range(-0.8..0.8) * rx_max;
                    let across = rng.random_range(-0.4..0.4) * sep;
                    let (fx, fy) = (spec.cx + ct * along + ax * across, spec.cy + st * along + ay * across);
                    let angle = rng.random_range(0.0..6.3);
                    let mut b = chromosomes(rng, spec, fx, fy, r * 1.3, r / 1.3, angle);
                    b.ragged = 0.15;
                    d.blobs.push(b);
                }
            }
            halo_p = 0.8;
            halo_r = (rx_max + 2.5 * px, reach + 2.5 * px);
        }
        MitoticPhase::Telophase => {
            let sep = rng.random_range(7.0..11.0) * px;
            let asp: f32 = rng.random_range(1.3..2.2);
            let ry = (a * 0.5 / (std::f32::consts::PI * asp)).sqrt() * px;
            let rx = asp * ry;
            for sign in [-1.0f32, 1.0] {
                let (x, y) = (spec.cx + ax * sign * sep * 0.5, spec.cy + ay * sign * sep * 0.5);
                d.patches.push(Patch {
                    cx: spec.cx + ax * sign * sep * 0.55,
                    cy: spec.cy + ay * sign * sep * 0.55,
                    rx: rx + 2.0 * px,
                    ry: sep * 0.5,
                    angle: theta,
                    edge: 1.0 * px,
                    clear: rng.random_range(0.5..0.8),
                    eosin_add: rng.random_range(0.1..0.25),
                });
                let tilt = rng.random_range(-0.2..0.2);
                let mut b = chromosomes(rng, spec, x, y, rx, ry, theta + tilt);
                b.ragged = rng.random_range(0.15..0.3);
                d.blobs.push(b);
            }
            halo_p = 0.4;
            halo_r = (rx + 3.0 * px, sep * 0.5 + ry + 3.0 * px);
        }
        MitoticPhase::AtypicalTripolar => {
            let asp: f32 = rng.random_range(2.0..2.8);
            let ry = (a / (3.0 * std::f32::consts::PI * asp)).sqrt() * px;
            let rx = asp * ry;
            for k in 0..3 {
                let phi = theta + k as f32 * std::f32::consts::TAU / 3.0 + rng.random_range(-0.2..0.2);
                let (x, y) = (spec.cx + phi.cos() * rx * 0.8, spec.cy + phi.sin() * rx * 0.8);
                d.blobs.push(chromosomes(rng, spec, x, y, rx, ry, phi));
            }
            halo_p = 0.8;
            halo_r = (2.0 * rx + 2.5 * px, 2.0 * rx + 2.5 * px);
        }
    }
    if rng.random_bool(halo_p) {
        let h = halo(rng, spec, halo_r.0, halo_r.1, theta);
        d.patches.insert(0, h);
    }
    // The rounded-up mitotic cell body: denser, more eosinophilic cytoplasm around the halo.
    let body = Patch {
        cx: spec.cx,
        cy: spec.cy,
        rx: halo_r.0 + 2.0 * px,
        ry: halo_r.1 + 2.0 * px,
        angle: theta,
        edge: 1.5 * px,
        clear: 1.0,
        eosin_add: rng.random_range(0.12..0.3),
    };
    d.patches.insert(0, body);
    d.clearance_px = halo_r.0.max(halo_r.1) + 3.0 * px;
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn phases_follow_their_frequencies() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let n = 20_000;
        let atypical = (0..n).filter(|_| MitoticPhase::sample(&mut rng).is_atypical()).count();
        let share = atypical as f64 / n as f64;
        assert!((share - 0.22).abs() < 0.015, "{share}");
    }

    #[test]
    fn every_phase_draws_chromatin_of_about_the_asked_area() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let spec = CellSpec { cx: 100.0, cy: 100.0, px_per_um: 1.0 / 0.23, darkness: 1.0, area_um2: 27.0 };
        for (phase, _) in MitoticPhase::TABLE {
            let d = draw_mitosis(&mut rng, &spec, phase);
            let area_px: f32 =
                d.blobs.iter().map(|b| std::f32::consts::PI * b.rx * b.ry / (spec.px_per_um * spec.px_per_um)).sum();
            assert!(area_px > 18.0 && area_px < 45.0, "{phase:?}: {area_px} µm²");
            assert!(d.clearance_px > 0.0);
        }
    }
}
