//! Drawing primitives of cells and the ordinary nuclei that fill the tissue.
//!
//! A [`Blob`] is a star-shaped patch of chromatin (a nucleus, a chromosome plate, a fragment):
//! an ellipse whose radius is perturbed by low harmonics (irregular outline) and by periodic
//! noise (ragged, "hairy" edges of condensed chromosomes), filled with haematoxylin modulated by
//! chromatin texture (blotchy grain or ridged threads), an optional membrane rim, a lighter core
//! and a nucleolus. A [`Patch`] changes the surroundings: a clear halo around a dividing cell,
//! the dense eosinophilic cytoplasm of an apoptotic body.
//!
//! Ordinary nuclei are placed on a jittered micrometre grid keyed by hashes, so any region can
//! produce exactly the nuclei that touch it without knowing the rest of the image.

use crate::hash_noise::{ValueNoise, derive, gaussish, hash2, mix64, smoothstep, unit};
use crate::tissue::{TissueModel, TissueSample};

/// A star-shaped chromatin region (all lengths in pixels).
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    pub cx: f32,
    pub cy: f32,
    /// Semi-axes along and across the orientation.
    pub rx: f32,
    pub ry: f32,
    /// Orientation (radians).
    pub angle: f32,
    /// Relative amplitudes and phases of outline harmonics 2, 3 and 4.
    pub harmonics: [(f32, f32); 3],
    /// Relative amplitude of the ragged edge (0 = smooth) and its number of lobes.
    pub ragged: f32,
    pub ragged_lobes: u32,
    /// Edge softness (px): a smooth membrane vs a crisp pyknotic edge.
    pub edge: f32,
    /// Haematoxylin inside.
    pub hematoxylin: f32,
    /// Eosin inside (a nucleus replaces the cytoplasm it sits in).
    pub eosin: f32,
    /// Chromatin texture amplitude (0 = homogeneous) and wavelength (px).
    pub grain: f32,
    pub grain_px: f32,
    /// 0 = blotchy grain, 1 = ridged threads (condensing chromosomes).
    pub threads: f32,
    /// Extra haematoxylin at the rim (nuclear membrane).
    pub rim: f32,
    /// Fraction by which the core is lighter (vesicular nuclei, ring-shaped plates seen en face).
    pub hollow: f32,
    /// Extra haematoxylin of a nucleolus (0 = none).
    pub nucleolus: f32,
    pub seed: u64,
}

impl Blob {
    /// A plain ellipse to start from.
    pub fn ellipse(cx: f32, cy: f32, rx: f32, ry: f32, angle: f32, hematoxylin: f32, seed: u64) -> Blob {
        Blob {
            cx,
            cy,
            rx,
            ry,
            angle,
            harmonics: [(0.0, 0.0); 3],
            ragged: 0.0,
            ragged_lobes: 12,
            edge: 0.9,
            hematoxylin,
            eosin: 0.1,
            grain: 0.2,
            grain_px: 4.0,
            threads: 0.0,
            rim: 0.0,
            hollow: 0.0,
            nucleolus: 0.0,
            seed,
        }
    }

    /// Largest distance from the centre that any part of the blob reaches.
    pub fn reach(&self) -> f32 {
        let h: f32 = self.harmonics.iter().map(|(a, _)| a.abs()).sum();
        self.rx.max(self.ry) * (1.0 + h + self.ragged) + 2.0 * self.edge + 1.0
    }

    /// Adds the blob to the haematoxylin/eosin planes of the region whose top-left pixel is
    /// (x0, y0) and width `w`.
    pub fn draw(&self, hem: &mut [f32], eos: &mut [f32], x0: i64, y0: i64, w: usize, grain_noise: &ValueNoise) {
        let h_rows = hem.len() / w;
        let reach = self.reach();
        let bx0 = ((self.cx - reach).floor() as i64).max(x0);
        let by0 = ((self.cy - reach).floor() as i64).max(y0);
        let bx1 = ((self.cx + reach).ceil() as i64).min(x0 + w as i64 - 1);
        let by1 = ((self.cy + reach).ceil() as i64).min(y0 + h_rows as i64 - 1);
        if bx0 > bx1 || by0 > by1 {
            return;
        }
        let (ca, sa) = (self.angle.cos(), self.angle.sin());
        let rmean = (self.rx * self.ry).sqrt();
        let off_x = unit(mix64(self.seed)) * 1000.0;
        let off_y = unit(mix64(self.seed ^ 0x55)) * 1000.0;
        let cos_sin: [(f32, f32); 3] = self.harmonics.map(|(_, p)| (p.cos(), p.sin()));
        let ragged_seed = derive(self.seed, 3);
        let nuc = (
            (unit(mix64(self.seed ^ 0x77)) - 0.5) * 0.8 * self.rx,
            (unit(mix64(self.seed ^ 0x99)) - 0.5) * 0.8 * self.ry,
        );
        let nuc_r = (0.18 * rmean).max(1.2);
        for py in by0..=by1 {
            let row = (py - y0) as usize * w;
            let dy = py as f32 + 0.5 - self.cy;
            for px in bx0..=bx1 {
                let dx = px as f32 + 0.5 - self.cx;
                let u = dx * ca + dy * sa;
                let v = -dx * sa + dy * ca;
                let (nu, nv) = (u / self.rx, v / self.ry);
                let rho2 = nu * nu + nv * nv;
                let rho = rho2.sqrt();
                let (c, s) = if rho > 1e-6 { (nu / rho, nv / rho) } else { (1.0, 0.0) };
                // cos(kθ + φ) through complex powers of (c, s).
                let (c2, s2) = (c * c - s * s, 2.0 * c * s);
                let (c3, s3) = (c2 * c - s2 * s, s2 * c + c2 * s);
                let (c4, s4) = (c2 * c2 - s2 * s2, 2.0 * c2 * s2);
                let ks = [(c2, s2), (c3, s3), (c4, s4)];
                let mut radius = 1.0;
                for k in 0..3 {
                    let (a, _) = self.harmonics[k];
                    if a != 0.0 {
                        radius += a * (ks[k].0 * cos_sin[k].0 - ks[k].1 * cos_sin[k].1);
                    }
                }
                if self.ragged > 0.0 {
                    let theta = s.atan2(c) / std::f32::consts::TAU + 0.5;
                    let lobes = self.ragged_lobes as f32;
                    let t = theta * lobes;
                    let i0 = crate::hash_noise::fast_floor(t);
                    let f = t - i0;
                    let f = f * f * (3.0 - 2.0 * f);
                    let i0 = i0 as i64 % self.ragged_lobes as i64;
                    let i1 = (i0 + 1) % self.ragged_lobes as i64;
                    let v0 = unit(hash2(ragged_seed, i0, 0));
                    let v1 = unit(hash2(ragged_seed, i1, 0));
                    radius += self.ragged * ((v0 + (v1 - v0) * f) * 2.0 - 1.0);
                }
                // Signed distance to the outline in pixels, roughly.
                let dist = (radius - rho) * rmean;
                let cover = ((dist / self.edge) + 0.5).clamp(0.0, 1.0);
                if cover <= 0.0 {
                    continue;
                }
                let gx = (px as f32 + off_x) / self.grain_px;
                let gy = (py as f32 + off_y) / self.grain_px;
                let n = grain_noise.at(gx, gy);
                let ridged = 1.0 - (2.0 * n - 1.0).abs();
                let t = n + (ridged * ridged - n) * self.threads;
                let mut hv = self.hematoxylin * (1.0 + self.grain * (2.0 * t - 1.0));
                let rel = (rho / radius.max(0.2)).min(1.0);
                if self.hollow > 0.0 {
                    hv *= 1.0 - self.hollow * (1.0 - smoothstep(0.25, 0.7, rel));
                }
                if self.rim > 0.0 {
                    hv += self.rim * smoothstep(0.7, 0.95, rel);
                }
                if self.nucleolus > 0.0 {
                    let (ex, ey) = (u - nuc.0, v - nuc.1);
                    let d = (ex * ex + ey * ey).sqrt();
                    hv += self.nucleolus * (1.0 - smoothstep(nuc_r * 0.6, nuc_r, d));
                }
                let i = row + (px - x0) as usize;
                let cur = hem[i];
                hem[i] = cur + cover * (hv - cur).max(0.0);
                eos[i] += cover * (self.eosin - eos[i]);
            }
        }
    }
}

/// A change of the surroundings of a cell (lengths in pixels).
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    pub cx: f32,
    pub cy: f32,
    pub rx: f32,
    pub ry: f32,
    pub angle: f32,
    pub edge: f32,
    /// Multiplies eosin and haematoxylin already there (< 1 clears: retraction halo).
    pub clear: f32,
    /// Eosin added (dense eosinophilic cytoplasm).
    pub eosin_add: f32,
}

impl Patch {
    pub fn reach(&self) -> f32 {
        self.rx.max(self.ry) + 2.0 * self.edge + 1.0
    }

    pub fn draw(&self, hem: &mut [f32], eos: &mut [f32], x0: i64, y0: i64, w: usize) {
        let h_rows = hem.len() / w;
        let reach = self.reach();
        let bx0 = ((self.cx - reach).floor() as i64).max(x0);
        let by0 = ((self.cy - reach).floor() as i64).max(y0);
        let bx1 = ((self.cx + reach).ceil() as i64).min(x0 + w as i64 - 1);
        let by1 = ((self.cy + reach).ceil() as i64).min(y0 + h_rows as i64 - 1);
        let (ca, sa) = (self.angle.cos(), self.angle.sin());
        let rmean = (self.rx * self.ry).sqrt();
        for py in by0..=by1 {
            let dy = py as f32 + 0.5 - self.cy;
            for px in bx0..=bx1 {
                let dx = px as f32 + 0.5 - self.cx;
                let u = (dx * ca + dy * sa) / self.rx;
                let v = (-dx * sa + dy * ca) / self.ry;
                let dist = (1.0 - (u * u + v * v).sqrt()) * rmean;
                let cover = (dist / self.edge + 0.5).clamp(0.0, 1.0);
                if cover <= 0.0 {
                    continue;
                }
                let i = (py - y0) as usize * w + (px - x0) as usize;
                let m = 1.0 + (self.clear - 1.0) * cover;
                hem[i] *= m;
                eos[i] = eos[i] * m + self.eosin_add * cover;
            }
        }
    }
}

/// Generator of the ordinary nuclei of an image: tumour/epithelial nuclei (round-oval,
/// vesicular, nucleolated), stromal fibroblasts (spindles along the fibres) and lymphocytes
/// (small, round, dark; dense in aggregates).
#[derive(Debug, Clone)]
pub struct BackgroundNuclei {
    seed: u64,
    um_per_px: f32,
    /// Mean haematoxylin of tumour nuclei in this image (pleomorphism and stain batch).
    pub tumour_hematoxylin: f32,
    /// Relative nuclear size of this tumour.
    pub tumour_size: f32,
    /// × the spacing of the main nucleus grid (the tumour type's cell density; 1 = breast).
    pub spacing: f32,
}

/// Spacing of the main nucleus grid and of the lymphocyte grid (µm).
const MAIN_CELL_UM: f32 = 9.0;
const LYMPH_CELL_UM: f32 = 6.5;

impl BackgroundNuclei {
    pub fn new(seed: u64, um_per_px: f64, tumour_hematoxylin: f32, tumour_size: f32) -> Self {
        BackgroundNuclei { seed, um_per_px: um_per_px as f32, tumour_hematoxylin, tumour_size, spacing: 1.0 }
    }

    /// Largest reach of an ordinary nucleus in pixels (for region margins).
    pub fn max_reach_px(&self) -> f32 {
        9.0 * self.tumour_size / self.um_per_px
    }

    /// Appends every ordinary nucleus whose centre lies in the pixel rectangle [x0, x1) × [y0, y1).
    pub fn centred_in(&self, tissue: &TissueModel, x0: f32, y0: f32, x1: f32, y1: f32, out: &mut Vec<Blob>) {
        let mpp = self.um_per_px;
        for (grid, cell_um) in [(0u64, MAIN_CELL_UM * self.spacing), (1u64, LYMPH_CELL_UM)] {
            let cell_px = cell_um / mpp;
            let gx0 = (x0 / cell_px).floor() as i64 - 1;
            let gy0 = (y0 / cell_px).floor() as i64 - 1;
            let gx1 = (x1 / cell_px).ceil() as i64 + 1;
            let gy1 = (y1 / cell_px).ceil() as i64 + 1;
            let gseed = derive(self.seed, 100 + grid);
            for gy in gy0..=gy1 {
                for gx in gx0..=gx1 {
                    let h = hash2(gseed, gx, gy);
                    let cx = (gx as f32 + 0.12 + 0.76 * unit(mix64(h ^ 1))) * cell_px;
                    let cy = (gy as f32 + 0.12 + 0.76 * unit(mix64(h ^ 2))) * cell_px;
                    if cx < x0 || cx >= x1 || cy < y0 || cy >= y1 {
                        continue;
                    }
                    let s = tissue.sample(cx, cy);
                    if let Some(b) = self.nucleus_at(grid, h, cx, cy, &s) {
                        out.push(b);
                    }
                }
            }
        }
    }

    fn nucleus_at(&self, grid: u64, h: u64, cx: f32, cy: f32, s: &TissueSample) -> Option<Blob> {
        let u = |k: u64| unit(mix64(h ^ (k * 0x1000_0001)));
        let g = |k: u64| gaussish(mix64(h ^ (k * 0x2000_0003)));
        let px = 1.0 / self.um_per_px;
        let seed = mix64(h ^ 0xB10B);
        let keep = s.tissue * (1.0 - s.lumen);
        if grid == 1 {
            // Lymphocytes: only in aggregates (and a sprinkle in stroma).
            let p = keep * (0.85 * s.lymph + 0.04 * (1.0 - s.epithelium));
            if u(3) >= p {
                return None;
            }
            let r = (2.7 + 0.25 * g(4)).clamp(2.1, 3.4) * px;
            let mut b = Blob::ellipse(cx, cy, r * (1.0 + 0.06 * u(5)), r, u(6) * 6.3, 0.78 + 0.1 * g(7), seed);
            b.harmonics[0] = (0.04 * u(8), u(9) * 6.3);
            b.grain = 0.18;
            b.grain_px = 1.1 * px;
            b.edge = 0.8;
            return Some(b);
        }
        let p_epi = 0.93 * s.epithelium;
        let p_stroma = 0.2 * (1.0 - s.epithelium);
        let pick = u(3);
        if pick < p_epi * keep {
            // Tumour nucleus: pleomorphic, vesicular, often nucleolated.
            let size = self.tumour_size * (1.0 + 0.17 * g(4)).clamp(0.65, 1.6);
            let r = 3.7 * size * px;
            let asp = 1.0 + 0.25 * u(5);
            let hem = (self.tumour_hematoxylin * (1.0 + 0.22 * g(6))).clamp(0.15, 0.95);
            let mut b = Blob::ellipse(cx, cy, r * asp.sqrt(), r / asp.sqrt(), u(7) * 6.3, hem, seed);
            b.harmonics = [(0.07 * u(8), u(9) * 6.3), (0.05 * u(10), u(11) * 6.3), (0.03 * u(12), u(13) * 6.3)];
            b.grain = 0.35 + 0.2 * u(14);
            b.grain_px = (0.9 + 0.5 * u(15)) * px;
            b.rim = 0.15 * hem;
            b.hollow = 0.25 * u(16);
            b.nucleolus = if u(17) < 0.55 { 0.5 * hem } else { 0.0 };
            b.edge = 1.0;
            b.eosin = 0.12;
            Some(b)
        } else if pick < (p_epi + p_stroma) * keep {
            if u(18) < 0.12 {
                // Stray lymphocyte or plasma cell in stroma.
                let r = (2.8 + 0.25 * g(4)).clamp(2.2, 3.5) * px;
                let mut b = Blob::ellipse(cx, cy, r * 1.05, r, u(6) * 6.3, 0.75 + 0.1 * g(7), seed);
                b.grain = 0.2;
                b.grain_px = 1.1 * px;
                return Some(b);
            }
            // Fibroblast: thin spindle along the fibres.
            let theta = 0.5 * s.fibre_dir[1].atan2(s.fibre_dir[0]) + 0.2 * g(5);
            let len = (5.5 + 1.2 * g(4)).clamp(3.0, 9.0) * px;
            let wid = (1.3 + 0.2 * g(8)).clamp(0.8, 2.0) * px;
            let mut b = Blob::ellipse(cx, cy, len, wid, theta, (0.55 + 0.1 * g(6)).clamp(0.3, 0.9), seed);
            b.harmonics[0] = (0.08 * u(9), u(10) * 6.3);
            b.grain = 0.2;
            b.grain_px = 1.0 * px;
            b.eosin = 0.3;
            Some(b)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn blob_covers_about_its_ellipse_area() {
        let b = Blob { grain: 0.0, ..Blob::ellipse(50.0, 50.0, 12.0, 6.0, 0.7, 1.0, 1) };
        let (mut hem, mut eos) = (vec![0.0f32; 100 * 100], vec![0.3f32; 100 * 100]);
        b.draw(&mut hem, &mut eos, 0, 0, 100, &ValueNoise::new(1));
        let area: f32 = hem.iter().sum();
        let expected = std::f32::consts::PI * 12.0 * 6.0;
        assert!((area - expected).abs() < 0.05 * expected, "{area} vs {expected}");
        // Drawing in two halves gives the same as drawing at once.
        let (mut h2, mut e2) = (vec![0.0f32; 100 * 100], vec![0.3f32; 100 * 100]);
        b.draw(&mut h2[..5000], &mut e2[..5000], 0, 0, 100, &ValueNoise::new(1));
        b.draw(&mut h2[5000..], &mut e2[5000..], 0, 50, 100, &ValueNoise::new(1));
        assert_eq!(hem, h2);
    }

    #[test]
    fn nuclei_of_a_region_are_the_union_of_its_parts() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let t = TissueModel::new(5, 0.23, &mut rng);
        let g = BackgroundNuclei::new(9, 0.23, 0.45, 1.0);
        let mut all = Vec::new();
        g.centred_in(&t, 0.0, 0.0, 400.0, 400.0, &mut all);
        let mut parts = Vec::new();
        g.centred_in(&t, 0.0, 0.0, 400.0, 200.0, &mut parts);
        g.centred_in(&t, 0.0, 200.0, 400.0, 400.0, &mut parts);
        assert_eq!(all.len(), parts.len());
        assert!(all.len() > 20, "{}", all.len());
    }
}
