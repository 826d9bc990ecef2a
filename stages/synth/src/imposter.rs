//! Hard negatives: cells a pathologist flags as "not mitotic figure" because they look like one
//! at first sight. They are drawn as dark and as large as mitotic figures (same distributions of
//! haematoxylin and chromatin area) so darkness and size alone cannot tell them apart; what
//! differs is shape and texture: smooth round outlines, homogeneous ink-like chromatin, round
//! fragments in eosinophilic cytoplasm, nucleoli and membranes, rarer halos.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::cell_drawing::{CellDrawing, CellSpec};
use crate::nucleus::{Blob, Patch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImposterKind {
    /// Shrunken, homogeneous, ink-dark round nucleus, often in hypereosinophilic cytoplasm.
    Pyknotic,
    /// Apoptotic body: round eosinophilic cytoplasm with round nuclear fragments.
    Apoptotic,
    /// Large dark tumour nucleus with coarse chromatin, membrane and nucleolus.
    Hyperchromatic,
    /// A tight group of lymphocytes.
    LymphocyteCluster,
    /// Dark, smooth, elongated (tangentially cut or crushed) nucleus: a plate without hair.
    DarkSpindle,
}

impl ImposterKind {
    const TABLE: [(ImposterKind, f64); 5] = [
        (ImposterKind::Pyknotic, 0.28),
        (ImposterKind::Apoptotic, 0.22),
        (ImposterKind::Hyperchromatic, 0.22),
        (ImposterKind::LymphocyteCluster, 0.14),
        (ImposterKind::DarkSpindle, 0.14),
    ];

    pub fn sample(rng: &mut impl Rng) -> ImposterKind {
        let mut u: f64 = rng.random();
        for (k, w) in Self::TABLE {
            if u < w {
                return k;
            }
            u -= w;
        }
        ImposterKind::Pyknotic
    }
}

fn smooth_dark(rng: &mut impl Rng, spec: &CellSpec, cx: f32, cy: f32, rx: f32, ry: f32, angle: f32) -> Blob {
    let mut b = Blob::ellipse(cx, cy, rx, ry, angle, spec.darkness * rng.random_range(0.95..1.1), rng.random());
    b.harmonics = [(rng.random_range(0.0..0.04), rng.random_range(0.0..6.3)), (0.0, 0.0), (0.0, 0.0)];
    b.edge = 0.6;
    b.grain = rng.random_range(0.04..0.1);
    b.grain_px = 1.0 * spec.px_per_um;
    b.eosin = 0.15;
    b
}

/// Draws a hard negative of `kind` at the spec's position.
pub fn draw_imposter(rng: &mut impl Rng, spec: &CellSpec, kind: ImposterKind) -> CellDrawing {
    let px = spec.px_per_um;
    let a = spec.area_um2;
    let theta: f32 = rng.random_range(0.0..std::f32::consts::PI);
    let r_eq = (a / std::f32::consts::PI).sqrt() * px;
    let mut d = CellDrawing::default();
    let (halo_p, halo_r);
    match kind {
        ImposterKind::Pyknotic => {
            let asp: f32 = rng.random_range(1.0..1.15);
            if rng.random_bool(0.5) {
                d.patches.push(Patch {
                    cx: spec.cx,
                    cy: spec.cy,
                    rx: r_eq * 1.9,
                    ry: r_eq * 1.7,
                    angle: theta,
                    edge: 1.0 * px,
                    clear: 1.0,
                    eosin_add: rng.random_range(0.25..0.45),
                });
            }
            d.blobs.push(smooth_dark(rng, spec, spec.cx, spec.cy, r_eq * asp.sqrt(), r_eq / asp.sqrt(), theta));
            halo_p = 0.35;
            halo_r = r_eq * 2.3;
        }
        ImposterKind::Apoptotic => {
            let rc = rng.random_range(4.0..6.0) * px;
            d.patches.push(Patch {
                cx: spec.cx,
                cy: spec.cy,
                rx: rc,
                ry: rc * rng.random_range(0.8..1.0),
                angle: theta,
                edge: 0.8 * px,
                clear: 0.6,
                eosin_add: rng.random_range(0.5..0.9),
            });
            let n = rng.random_range(2..=5);
            let rs = (a / (std::f32::consts::PI * n as f32)).sqrt() * px;
            for i in 0..n {
                let phi = theta + i as f32 * std::f32::consts::TAU / n as f32 + rng.random_range(-0.4..0.4);
                let rr = rng.random_range(0.3..0.6) * (rc - rs).max(0.0);
                let r = rs * rng.random_range(0.85..1.15);
                d.blobs.push(smooth_dark(rng, spec, spec.cx + rr * phi.cos(), spec.cy + rr * phi.sin(), r, r, 0.0));
            }
            halo_p = 0.6;
            halo_r = rc + 2.0 * px;
        }
        ImposterKind::Hyperchromatic => {
            let r = r_eq * 1.12;
            let asp: f32 = rng.random_range(1.1..1.5);
            let mut b = smooth_dark(rng, spec, spec.cx, spec.cy, r * asp.sqrt(), r / asp.sqrt(), theta);
            b.hematoxylin = spec.darkness * rng.random_range(0.85..1.0);
            b.harmonics[1] = (rng.random_range(0.0..0.05), rng.random_range(0.0..6.3));
            b.grain = rng.random_range(0.3..0.45);
            b.grain_px = 1.1 * px;
            b.rim = 0.2 * spec.darkness;
            b.nucleolus = if rng.random_bool(0.6) { 0.3 * spec.darkness } else { 0.0 };
            b.edge = 0.9;
            d.blobs.push(b);
            halo_p = 0.15;
            halo_r = r * asp.sqrt() + 2.0 * px;
        }
        ImposterKind::LymphocyteCluster => {
            let n = rng.random_range(2..=4);
            let r = ((a / (std::f32::consts::PI * n as f32)).sqrt() * 1.1).max(1.9) * px;
            let mut centres: Vec<(f32, f32)> = vec![(spec.cx, spec.cy)];
            while centres.len() < n {
                let (bx, by) = centres[rng.random_range(0..centres.len())];
                let phi: f32 = rng.random_range(0.0..6.3);
                let (x, y) = (bx + 1.9 * r * phi.cos(), by + 1.9 * r * phi.sin());
                if centres.iter().all(|&(ox, oy)| (ox - x).hypot(oy - y) > 1.7 * r) {
                    centres.push((x, y));
                }
            }
            // Re-centre the group on the annotated position.
            let (mx, my) = centres.iter().fold((0.0, 0.0), |s, c| (s.0 + c.0, s.1 + c.1));
            let (mx, my) = (mx / n as f32 - spec.cx, my / n as f32 - spec.cy);
            for (x, y) in centres {
                let angle = rng.random_range(0.0..6.3);
                let mut b = smooth_dark(rng, spec, x - mx, y - my, r * 1.05, r, angle);
                b.hematoxylin = spec.darkness * rng.random_range(0.88..1.0);
                b.grain = 0.15;
                d.blobs.push(b);
            }
            halo_p = 0.1;
            halo_r = 3.0 * r + 2.0 * px;
        }
        ImposterKind::DarkSpindle => {
            let asp: f32 = rng.random_range(2.4..3.6);
            let ry = (a / (std::f32::consts::PI * asp)).sqrt() * px;
            let mut b = smooth_dark(rng, spec, spec.cx, spec.cy, asp * ry, ry, theta);
            b.harmonics[0] = (rng.random_range(0.0..0.08), rng.random_range(0.0..6.3));
            d.blobs.push(b);
            halo_p = 0.2;
            halo_r = asp * ry + 2.0 * px;
        }
    }
    if rng.random_bool(halo_p) {
        d.patches.insert(
            0,
            Patch {
                cx: spec.cx,
                cy: spec.cy,
                rx: halo_r,
                ry: halo_r * rng.random_range(0.8..1.0),
                angle: theta,
                edge: 1.5 * px,
                clear: rng.random_range(0.25..0.55),
                eosin_add: 0.0,
            },
        );
    }
    d.clearance_px = halo_r + 2.0 * px;
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn imposters_draw_about_the_asked_chromatin_area() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let spec = CellSpec { cx: 100.0, cy: 100.0, px_per_um: 1.0 / 0.25, darkness: 1.0, area_um2: 27.0 };
        for (kind, _) in ImposterKind::TABLE {
            let d = draw_imposter(&mut rng, &spec, kind);
            let area: f32 =
                d.blobs.iter().map(|b| std::f32::consts::PI * b.rx * b.ry / (spec.px_per_um * spec.px_per_um)).sum();
            assert!(area > 18.0 && area < 45.0, "{kind:?}: {area} µm²");
            assert!(d.blobs.iter().all(|b| b.ragged == 0.0), "imposters have smooth outlines");
        }
    }
}
