//! Macenko et al. 2009, "A method for normalizing histology slides for quantitative analysis":
//! the stain vectors are the extreme directions (1st and 99th percentile of the angle) of the
//! tissue's optical densities projected on the plane of their two main principal axes; the
//! haematoxylin vector is the one with the larger red density. Concentrations are the
//! least-squares solution on those two vectors; their 99th percentiles scale an image onto the
//! reference.

use serde::{Deserialize, Serialize};

use super::linalg::{self, Mat3};
use super::od::{apply_od_matrix, od_table};
use super::{MIN_TISSUE_PIXELS, StainError, TISSUE_OD};

/// Percentile of the angle that defines the extreme stain directions (Macenko's α, in %).
pub const ANGLE_PERCENTILE: f64 = 1.0;
/// Percentile of a stain's concentrations taken as its maximum.
pub const MAX_CONCENTRATION_PERCENTILE: f64 = 99.0;

/// An image's two stains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MacenkoStains {
    /// Unit optical-density vectors (R, G, B) of haematoxylin and eosin.
    pub hematoxylin: [f64; 3],
    pub eosin: [f64; 3],
    /// 99th percentile of each stain's concentration over the tissue pixels.
    pub max_concentration: [f64; 2],
    /// Tissue pixels the estimate used.
    pub tissue_pixels: usize,
}

/// `od_out = m · od_in` per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct OdMatrix(pub [[f32; 3]; 3]);

impl OdMatrix {
    pub fn apply(&self, pixels: &mut [u8]) {
        apply_od_matrix(pixels, &self.0)
    }
}

/// Whether a pixel of these densities is tissue (see [`TISSUE_OD`]).
pub(crate) fn is_tissue(d: [f32; 3]) -> bool {
    d[0] + d[1] + d[2] > 3.0 * TISSUE_OD
}

/// Tissue optical densities of interleaved RGB pixels.
pub(crate) fn tissue_od(pixels: &[u8]) -> Result<Vec<[f32; 3]>, StainError> {
    let t = od_table();
    let tissue: Vec<[f32; 3]> = pixels
        .chunks_exact(3)
        .map(|p| [t[p[0] as usize], t[p[1] as usize], t[p[2] as usize]])
        .filter(|&d| is_tissue(d))
        .collect();
    if tissue.len() < MIN_TISSUE_PIXELS {
        return Err(StainError::NoTissue { sampled: pixels.len() / 3, tissue: tissue.len() });
    }
    Ok(tissue)
}

impl MacenkoStains {
    /// Estimates the stains of interleaved RGB `pixels` from their tissue pixels.
    pub fn estimate(pixels: &[u8]) -> Result<MacenkoStains, StainError> {
        let od = tissue_od(pixels)?;
        let n = od.len() as f64;
        let mean: [f64; 3] = std::array::from_fn(|c| od.iter().map(|d| f64::from(d[c])).sum::<f64>() / n);
        // Macenko's SVD of the densities is the eigen-decomposition of their scatter matrix
        // (taken about the origin: the stains are directions from white, not from the mean).
        let mut scatter: Mat3 = [[0.0; 3]; 3];
        for d in &od {
            let d = d.map(f64::from);
            for (row, di) in scatter.iter_mut().zip(d) {
                for (v, dj) in row.iter_mut().zip(d) {
                    *v += di * dj;
                }
            }
        }
        let (values, vectors) = linalg::symmetric_eigen(scatter);
        if values[1] <= values[0] * 1e-9 {
            return Err(StainError::Degenerate("one colour only".into()));
        }
        // Orient the plane's axes: the first along the mean density, the second so that
        // angles increase from eosin-like (green-heavy) to haematoxylin-like (red-heavy) colours.
        let mut e1 = vectors[0];
        if linalg::dot(e1, mean) < 0.0 {
            e1 = e1.map(|v| -v);
        }
        let e2 = vectors[1];
        let mut angles: Vec<f32> = od
            .iter()
            .map(|d| {
                let d = d.map(f64::from);
                linalg::dot(d, e2).atan2(linalg::dot(d, e1)) as f32
            })
            .collect();
        let lo = f64::from(linalg::percentile(&mut angles, ANGLE_PERCENTILE));
        let hi = f64::from(linalg::percentile(&mut angles, 100.0 - ANGLE_PERCENTILE));
        let direction = |phi: f64| linalg::normalise(std::array::from_fn(|c| e1[c] * phi.cos() + e2[c] * phi.sin()));
        let (a, b) = (direction(lo), direction(hi));
        let (hematoxylin, eosin) = if a[0] > b[0] { (a, b) } else { (b, a) };
        let cos = linalg::dot(hematoxylin, eosin);
        if cos > 0.999_9 {
            return Err(StainError::Degenerate(format!("the two stain directions coincide (cos {cos:.5})")));
        }
        let unmix = unmixing(hematoxylin, eosin);
        let mut conc: [Vec<f32>; 2] = [Vec::with_capacity(od.len()), Vec::with_capacity(od.len())];
        for d in &od {
            let d = d.map(f64::from);
            for (s, c) in conc.iter_mut().enumerate() {
                c.push(linalg::dot(unmix[s], d) as f32);
            }
        }
        let max_concentration = conc.map(|mut c| f64::from(linalg::percentile(&mut c, MAX_CONCENTRATION_PERCENTILE)));
        if max_concentration.iter().any(|&c| c <= 1e-6 || !c.is_finite()) {
            return Err(StainError::Degenerate(format!("stain concentrations {max_concentration:?}")));
        }
        Ok(MacenkoStains { hematoxylin, eosin, max_concentration, tissue_pixels: od.len() })
    }

    /// The OD matrix normalising this image onto `reference`: `S_ref · diag(c_ref / c) · S⁺`.
    pub fn transform_to(&self, reference: &MacenkoStains) -> OdMatrix {
        let unmix = unmixing(self.hematoxylin, self.eosin);
        let scale = [
            reference.max_concentration[0] / self.max_concentration[0],
            reference.max_concentration[1] / self.max_concentration[1],
        ];
        let stains = [reference.hematoxylin, reference.eosin];
        OdMatrix(std::array::from_fn(|j| {
            std::array::from_fn(|k| (0..2).map(|s| stains[s][j] * scale[s] * unmix[s][k]).sum::<f64>() as f32)
        }))
    }
}

/// The pseudo-inverse rows of the 3 × 2 stain matrix `[h e]`: `(SᵀS)⁻¹ Sᵀ`.
fn unmixing(h: [f64; 3], e: [f64; 3]) -> [[f64; 3]; 2] {
    let (hh, he, ee) = (linalg::dot(h, h), linalg::dot(h, e), linalg::dot(e, e));
    let det = hh * ee - he * he;
    let inv = [[ee / det, -he / det], [-he / det, hh / det]];
    std::array::from_fn(|s| std::array::from_fn(|c| inv[s][0] * h[c] + inv[s][1] * e[c]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stain::od::byte_of;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Pixels made by Beer–Lambert from two known stains with random concentrations (a quarter
    /// of them bare glass), as a synthetic slide.
    pub(crate) fn stained(h: [f64; 3], e: [f64; 3], max: [f64; 2], n: usize, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n * 3);
        for _ in 0..n {
            if rng.random_bool(0.25) {
                out.extend([255u8, 254, 255]);
                continue;
            }
            let ch = rng.random_range(0.0..max[0]);
            let ce = rng.random_range(0.0..max[1]);
            let ch = if rng.random_bool(0.3) { ch } else { ch * 0.2 }; // nuclei are fewer than stroma
            for c in 0..3 {
                out.push(byte_of((h[c] * ch + e[c] * ce) as f32));
            }
        }
        out
    }

    const H: [f64; 3] = [0.65, 0.70, 0.29];
    const E: [f64; 3] = [0.07, 0.99, 0.11];

    #[test]
    fn recovers_a_synthetic_stain_matrix() {
        for (h, e) in [(H, E), ([0.55, 0.76, 0.34], [0.16, 0.93, 0.33])] {
            let (h, e) = (linalg::normalise(h), linalg::normalise(e));
            let px = stained(h, e, [1.6, 1.1], 60_000, 3);
            let s = MacenkoStains::estimate(&px).unwrap();
            let angle = |a: [f64; 3], b: [f64; 3]| linalg::dot(a, b).clamp(-1.0, 1.0).acos().to_degrees();
            assert!(angle(s.hematoxylin, h) < 3.0, "H {:?} vs {h:?}", s.hematoxylin);
            assert!(angle(s.eosin, e) < 3.0, "E {:?} vs {e:?}", s.eosin);
        }
    }

    #[test]
    fn normalising_onto_itself_changes_little_and_onto_another_moves_the_colour() {
        let (h, e) = (linalg::normalise(H), linalg::normalise(E));
        let px = stained(h, e, [1.6, 1.1], 40_000, 5);
        let own = MacenkoStains::estimate(&px).unwrap();
        let mut same = px.clone();
        own.transform_to(&own).apply(&mut same);
        let max_diff = px.iter().zip(&same).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(max_diff <= 3, "self-normalisation moved a byte by {max_diff}");

        let (h2, e2) = (linalg::normalise([0.55, 0.76, 0.34]), linalg::normalise([0.16, 0.93, 0.33]));
        let other = MacenkoStains::estimate(&stained(h2, e2, [0.9, 0.6], 40_000, 6)).unwrap();
        let mut moved = stained(h2, e2, [0.9, 0.6], 40_000, 7);
        other.transform_to(&own).apply(&mut moved);
        let after = MacenkoStains::estimate(&moved).unwrap();
        let angle = |a: [f64; 3], b: [f64; 3]| linalg::dot(a, b).clamp(-1.0, 1.0).acos().to_degrees();
        assert!(angle(after.hematoxylin, own.hematoxylin) < 3.0 && angle(after.eosin, own.eosin) < 3.0);
        for s in 0..2 {
            let r = after.max_concentration[s] / own.max_concentration[s];
            assert!((0.85..1.15).contains(&r), "stain {s}: concentration ratio {r}");
        }
    }

    #[test]
    fn no_tissue_and_one_colour_are_errors() {
        let glass = vec![250u8; 3 * 10_000];
        match MacenkoStains::estimate(&glass) {
            Err(StainError::NoTissue { sampled: 10_000, tissue: 0 }) => {}
            other => panic!("{other:?}"),
        }
        let flat: Vec<u8> = (0..10_000).flat_map(|_| [120u8, 60, 140]).collect();
        assert!(matches!(MacenkoStains::estimate(&flat), Err(StainError::Degenerate(_))));
    }
}
