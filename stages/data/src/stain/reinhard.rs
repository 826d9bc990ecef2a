//! Reinhard et al. 2001, "Color transfer between images", as stain normalisation: in Ruderman's
//! lαβ space (a log-LMS cone space with decorrelated axes) each channel's mean and standard
//! deviation over the tissue pixels are matched to the reference's. In log-LMS coordinates the
//! whole map is one affine transform, so a pixel costs a 3 × 3 product, three logarithms, an
//! affine 3 × 3 and three exponentials.

use serde::{Deserialize, Serialize};

use super::StainError;
use super::linalg::{self, Mat3};
use super::macenko::{is_tissue, tissue_od};
use super::od::od;

/// Reinhard's RGB → LMS matrix.
const LMS_FROM_RGB: Mat3 = [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]];

/// log-LMS → lαβ (rows scaled by 1/√3, 1/√6, 1/√2).
fn lab_from_log_lms() -> Mat3 {
    let (a, b, c) = (1.0 / 3f64.sqrt(), 1.0 / 6f64.sqrt(), 1.0 / 2f64.sqrt());
    [[a, a, a], [b, b, -2.0 * b], [c, -c, 0.0]]
}

/// Mean and standard deviation per lαβ channel of an image's tissue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabStats {
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub tissue_pixels: usize,
}

fn log_lms(rgb: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|i| linalg::dot(LMS_FROM_RGB[i], rgb).max(1e-6).ln())
}

/// `(v + 1) / 256`: strictly positive, white 255 → 1 (consistent with the OD tables).
fn unit(v: u8) -> f64 {
    (f64::from(v) + 1.0) / 256.0
}

impl LabStats {
    pub fn estimate(pixels: &[u8]) -> Result<LabStats, StainError> {
        tissue_od(pixels)?; // the same tissue test and "no tissue" error as Macenko
        let to_lab = lab_from_log_lms();
        let (mut sum, mut sq, mut n) = ([0f64; 3], [0f64; 3], 0usize);
        for p in pixels.chunks_exact(3) {
            if !is_tissue([od(p[0]), od(p[1]), od(p[2])]) {
                continue;
            }
            let l = log_lms([unit(p[0]), unit(p[1]), unit(p[2])]);
            for c in 0..3 {
                let v = linalg::dot(to_lab[c], l);
                sum[c] += v;
                sq[c] += v * v;
            }
            n += 1;
        }
        let mean = sum.map(|s| s / n as f64);
        let std: [f64; 3] = std::array::from_fn(|c| (sq[c] / n as f64 - mean[c] * mean[c]).max(0.0).sqrt());
        if std.iter().any(|&s| s < 1e-6) {
            return Err(StainError::Degenerate(format!("lαβ standard deviations {std:?}")));
        }
        Ok(LabStats { mean, std, tissue_pixels: n })
    }

    /// The map onto `reference`: lαβ_out = (lαβ − μ) · σ_ref / σ + μ_ref, as an affine map of
    /// log-LMS.
    pub fn transform_to(&self, reference: &LabStats) -> LabTransform {
        let a = lab_from_log_lms();
        let a_inv = linalg::invert3(a).expect("the lαβ basis is invertible");
        let d: [f64; 3] = std::array::from_fn(|c| reference.std[c] / self.std[c]);
        let t: [f64; 3] = std::array::from_fn(|c| reference.mean[c] - d[c] * self.mean[c]);
        let da: Mat3 = std::array::from_fn(|i| std::array::from_fn(|j| d[i] * a[i][j]));
        let m = linalg::mul3(&a_inv, &da);
        let offset: [f64; 3] = std::array::from_fn(|i| linalg::dot(a_inv[i], t));
        let rgb_from_lms = linalg::invert3(LMS_FROM_RGB).expect("Reinhard's LMS matrix is invertible");
        let f = |m: Mat3| m.map(|r| r.map(|v| v as f32));
        LabTransform { log_lms: f(m), offset: offset.map(|v| v as f32), rgb_from_lms: f(rgb_from_lms) }
    }
}

/// Per pixel: `LMS = M_lms · rgb`, `log LMS ← M · log LMS + offset`, `rgb = M_lms⁻¹ · LMS`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabTransform {
    pub log_lms: [[f32; 3]; 3],
    pub offset: [f32; 3],
    pub rgb_from_lms: [[f32; 3]; 3],
}

impl LabTransform {
    pub fn apply(&self, pixels: &mut [u8]) {
        let lms_from_rgb = LMS_FROM_RGB.map(|r| r.map(|v| v as f32));
        let unit: [f32; 256] = std::array::from_fn(|v| (v as f32 + 1.0) / 256.0);
        let (m, o, back) = (&self.log_lms, &self.offset, &self.rgb_from_lms);
        for px in pixels.chunks_exact_mut(3) {
            let rgb = [unit[px[0] as usize], unit[px[1] as usize], unit[px[2] as usize]];
            let l: [f32; 3] = std::array::from_fn(|i| {
                (lms_from_rgb[i][0] * rgb[0] + lms_from_rgb[i][1] * rgb[1] + lms_from_rgb[i][2] * rgb[2]).max(1e-6).ln()
            });
            let lms: [f32; 3] =
                std::array::from_fn(|i| (m[i][0] * l[0] + m[i][1] * l[1] + m[i][2] * l[2] + o[i]).exp());
            for c in 0..3 {
                let v = back[c][0] * lms[0] + back[c][1] * lms[1] + back[c][2] * lms[2];
                px[c] = (v * 256.0 - 1.0).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stain::macenko::tests::stained;

    #[test]
    fn matches_the_reference_statistics() {
        let h = linalg::normalise([0.65, 0.70, 0.29]);
        let e = linalg::normalise([0.07, 0.99, 0.11]);
        let reference = LabStats::estimate(&stained(h, e, [1.6, 1.1], 30_000, 1)).unwrap();
        let h2 = linalg::normalise([0.55, 0.76, 0.34]);
        // Tissue only, so that the pixels measured after the map are those it was fitted on.
        let mut px: Vec<u8> = stained(h2, e, [0.9, 0.7], 30_000, 2)
            .chunks_exact(3)
            .filter(|p| is_tissue([od(p[0]), od(p[1]), od(p[2])]))
            .flatten()
            .copied()
            .collect();
        let before = LabStats::estimate(&px).unwrap();
        let mut same = px.clone();
        before.transform_to(&before).apply(&mut same);
        assert!(px.iter().zip(&same).all(|(a, b)| a.abs_diff(*b) <= 1), "self-map is not the identity");
        before.transform_to(&reference).apply(&mut px);
        let after = LabStats::estimate(&px).unwrap();
        for c in 0..3 {
            let gap_before = (before.mean[c] - reference.mean[c]).abs();
            let gap_after = (after.mean[c] - reference.mean[c]).abs();
            assert!(gap_after < 0.25 * gap_before + 0.01, "channel {c}: mean gap {gap_before} → {gap_after}");
        }
        assert!(matches!(LabStats::estimate(&[250u8; 3000]), Err(StainError::NoTissue { .. })));
    }
}
