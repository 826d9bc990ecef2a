//! The tissue layout of one image: where there is tissue at all, where epithelium (tumour nests
//! and glands with lumina) lies, where stroma with its eosinophilic collagen fibres runs and in
//! which direction, and where lymphocytes aggregate. All fields are smooth noise in micrometres,
//! so every scanner shows the same histology at its own pixel size.

use rand::Rng;

use crate::hash_noise::{ValueNoise, derive, smoothstep};

/// Local tissue composition at one point (each in [0, 1]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TissueSample {
    /// 1 = tissue, 0 = bare glass.
    pub tissue: f32,
    /// 1 = epithelium (tumour cells), 0 = stroma.
    pub epithelium: f32,
    /// 1 = gland lumen or loose-stroma gap (nearly no stain).
    pub lumen: f32,
    /// 1 = lymphocyte aggregate.
    pub lymph: f32,
    /// Fibre direction as the doubled-angle vector (cos 2θ, sin 2θ) so that it interpolates.
    pub fibre_dir: [f32; 2],
}

impl TissueSample {
    pub fn lerp(a: &TissueSample, b: &TissueSample, t: f32) -> TissueSample {
        let l = |x: f32, y: f32| x + (y - x) * t;
        TissueSample {
            tissue: l(a.tissue, b.tissue),
            epithelium: l(a.epithelium, b.epithelium),
            lumen: l(a.lumen, b.lumen),
            lymph: l(a.lymph, b.lymph),
            fibre_dir: [l(a.fibre_dir[0], b.fibre_dir[0]), l(a.fibre_dir[1], b.fibre_dir[1])],
        }
    }

    /// How welcome a tumour cell (and so a mitotic figure or its look-alikes) is here.
    pub fn tumour_weight(&self) -> f32 {
        self.tissue * (1.0 - self.lumen) * (1.0 - self.lymph) * (0.12 + 0.88 * self.epithelium)
    }
}

/// Per-image tissue field and base staining.
#[derive(Debug, Clone)]
pub struct TissueModel {
    um_per_px: f32,
    tissue_noise: ValueNoise,
    epi_noise: ValueNoise,
    lumen_noise: ValueNoise,
    lymph_noise: ValueNoise,
    angle_noise: ValueNoise,
    fibre_noise: ValueNoise,
    fibre_fine_noise: ValueNoise,
    cyto_noise: ValueNoise,
    /// fbm level above which there is tissue; larger = more bare glass.
    tissue_cut: f32,
    /// fbm level above which there is epithelium; larger = more stroma.
    epi_cut: f32,
    lumen_cut: f32,
    lymph_cut: f32,
    /// Eosin amount of dense collagen and of epithelial cytoplasm.
    pub stroma_eosin: f32,
    pub cytoplasm_eosin: f32,
}

impl TissueModel {
    pub fn new(seed: u64, um_per_px: f64, rng: &mut impl Rng) -> TissueModel {
        TissueModel {
            um_per_px: um_per_px as f32,
            tissue_noise: ValueNoise::new(derive(seed, 11)),
            epi_noise: ValueNoise::new(derive(seed, 12)),
            lumen_noise: ValueNoise::new(derive(seed, 13)),
            lymph_noise: ValueNoise::new(derive(seed, 14)),
            angle_noise: ValueNoise::new(derive(seed, 15)),
            fibre_noise: ValueNoise::new(derive(seed, 16)),
            fibre_fine_noise: ValueNoise::new(derive(seed, 17)),
            cyto_noise: ValueNoise::new(derive(seed, 18)),
            // Most images are nearly all tissue; some have large bare areas.
            tissue_cut: if rng.random_bool(0.3) { rng.random_range(0.42..0.52) } else { rng.random_range(0.22..0.36) },
            epi_cut: rng.random_range(0.40..0.56),
            lumen_cut: rng.random_range(0.66..0.74),
            lymph_cut: rng.random_range(0.70..0.80),
            stroma_eosin: rng.random_range(0.75..1.05),
            cytoplasm_eosin: rng.random_range(0.5..0.75),
        }
    }

    /// Tissue composition at pixel (x, y).
    pub fn sample(&self, x: f32, y: f32) -> TissueSample {
        let (u, v) = (x * self.um_per_px, y * self.um_per_px);
        let t = self.tissue_noise.fbm(u / 260.0, v / 260.0, 4, 0.5);
        let tissue = smoothstep(self.tissue_cut - 0.015, self.tissue_cut + 0.015, t);
        let e = self.epi_noise.fbm(u / 110.0, v / 110.0, 3, 0.5);
        let epithelium = smoothstep(self.epi_cut - 0.012, self.epi_cut + 0.012, e);
        let l = self.lumen_noise.fbm(u / 32.0, v / 32.0, 2, 0.45);
        // Lumina inside epithelium (glands); small loose gaps in stroma.
        let lumen = smoothstep(self.lumen_cut, self.lumen_cut + 0.02, l) * (0.35 + 0.65 * epithelium);
        let ly = self.lymph_noise.fbm(u / 55.0, v / 55.0, 3, 0.5);
        let lymph = smoothstep(self.lymph_cut, self.lymph_cut + 0.03, ly) * (1.0 - epithelium);
        // Fibres turn slowly: bundles, not whirlpools.
        let a = self.angle_noise.fbm(u / 320.0, v / 320.0, 2, 0.4) * std::f32::consts::PI * 1.6;
        TissueSample { tissue, epithelium, lumen, lymph, fibre_dir: [(2.0 * a).cos(), (2.0 * a).sin()] }
    }

    /// Haematoxylin and eosin of the ground substance at pixel (x, y): collagen fibres in
    /// stroma, finely granular cytoplasm in epithelium, nearly nothing in lumina and on glass.
    #[inline]
    pub fn base_stain(&self, s: &TissueSample, x: f32, y: f32) -> (f32, f32) {
        let keep = s.tissue * (1.0 - s.lumen);
        if keep <= 0.0 {
            return (0.004, 0.012 * s.tissue);
        }
        let (u, v) = (x * self.um_per_px, y * self.um_per_px);
        let mut stroma_e = 0.0;
        if s.epithelium < 0.999 {
            // Fibre direction from the doubled-angle vector.
            let n = (s.fibre_dir[0] * s.fibre_dir[0] + s.fibre_dir[1] * s.fibre_dir[1]).sqrt().max(1e-6);
            let c2 = s.fibre_dir[0] / n;
            let (c, sn) =
                (((1.0 + c2) * 0.5).max(0.0).sqrt(), (((1.0 - c2) * 0.5).max(0.0).sqrt()).copysign(s.fibre_dir[1]));
            let along = u * c + v * sn;
            let across = -u * sn + v * c;
            let f = self.fibre_noise.at(along / 16.0, across / 1.7);
            let g = self.fibre_fine_noise.at(along / 6.0, across / 1.2);
            let fib = 0.72 * f + 0.28 * g;
            stroma_e = self.stroma_eosin * (0.04 + 1.6 * smoothstep(0.25, 0.8, fib));
        }
        let e_mix = if s.epithelium > 0.001 {
            let c = 0.6 * self.cyto_noise.at(u / 2.2, v / 2.2) + 0.4 * self.cyto_noise.at(u / 0.7 + 91.0, v / 0.7);
            let cyto_e = self.cytoplasm_eosin * (0.3 + 1.4 * c);
            stroma_e + (cyto_e - stroma_e) * s.epithelium
        } else {
            stroma_e
        };
        let h_mix = 0.035 + 0.045 * s.epithelium + 0.06 * s.lymph;
        (h_mix * keep + 0.004, e_mix * keep + 0.012 * s.tissue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fields_are_bounded_and_mixed() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let t = TissueModel::new(3, 0.25, &mut rng);
        let (mut epi, mut tissue, n) = (0.0, 0.0, 2500);
        for i in 0..n {
            let s = t.sample((i % 50) as f32 * 200.0, (i / 50) as f32 * 200.0);
            for v in [s.tissue, s.epithelium, s.lumen, s.lymph] {
                assert!((0.0..=1.0).contains(&v));
            }
            epi += s.epithelium;
            tissue += s.tissue;
            let (h, e) = t.base_stain(&s, i as f32, 0.0);
            assert!(h >= 0.0 && (0.0..2.0).contains(&e));
        }
        let (epi, tissue) = (epi / n as f32, tissue / n as f32);
        assert!(epi > 0.1 && epi < 0.9, "epithelium fraction {epi}");
        assert!(tissue > 0.3, "tissue fraction {tissue}");
    }
}
