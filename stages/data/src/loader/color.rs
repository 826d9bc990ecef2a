//! Colour augmentations in the hot loop: HED stain jitter through lookup tables and one fused
//! 3 × 3 matrix per patch, then brightness/contrast through a 256-entry table.
//!
//! HED follows scikit-image `rgb2hed`/`hed2rgb` (Ruifrok & Johnston's H&E-DAB matrix, densities
//! clipped at 0), in plain optical density (−ln(I/255), I ≥ 1e-6·255) so that a jitter σ means
//! what Tellez et al. meant. With α = 1, β = 0 a pixel comes back unchanged except where
//! skimage's clipping of negative densities changes it too.

use std::sync::OnceLock;

/// skimage `rgb_from_hed`: rows are the H, E, D stain vectors.
const RGB_FROM_HED: [[f64; 3]; 3] = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]];

/// Output-density table resolution: entries per unit of optical density.
const EXP_STEPS_PER_OD: f32 = 1024.0;
/// Densities beyond this are black (255·e^−8 < 0.1).
const EXP_TABLE_LEN: usize = 8 * 1024;

struct Tables {
    /// −ln(max(v/255, 1e-6)) for each byte.
    od: [f32; 256],
    /// round(255·e^(−i/1024)).
    exp: Box<[u8; EXP_TABLE_LEN]>,
    /// skimage `hed_from_rgb` = inverse of `RGB_FROM_HED`.
    hed_from_rgb: [[f32; 3]; 3],
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let od = std::array::from_fn(|v| -(f64::max(v as f64 / 255.0, 1e-6)).ln() as f32);
        let exp = Box::new(std::array::from_fn(|i| {
            (255.0 * (-(i as f64) / f64::from(EXP_STEPS_PER_OD)).exp()).round() as u8
        }));
        let inv = crate::stain::linalg::invert3(RGB_FROM_HED).expect("the HED matrix is invertible");
        Tables { od, exp, hed_from_rgb: inv.map(|row| row.map(|v| v as f32)) }
    })
}

/// HED jitter in place: densities h = od·HED_FROM_RGB (clipped ≥ 0) become h·α + β, and back.
///
/// Pixels go through in blocks: table lookups in, a branch-free float part the compiler
/// vectorises, table lookups out.
pub(crate) fn stain_jitter(pixels: &mut [u8], alpha: [f32; 3], beta: [f32; 3]) {
    let t = tables();
    let m = t.hed_from_rgb;
    // Fused back-projection: od_out[j] = Σk (h[k]·α[k] + β[k])·R[k][j] = offset[j] + Σk h[k]·a[k][j].
    let a: [[f32; 3]; 3] = std::array::from_fn(|k| std::array::from_fn(|j| alpha[k] * RGB_FROM_HED[k][j] as f32));
    let offset: [f32; 3] = std::array::from_fn(|j| (0..3).map(|k| beta[k] * RGB_FROM_HED[k][j] as f32).sum());
    crate::stain::od::map_densities(pixels, &t.od, &t.exp[..], EXP_STEPS_PER_OD, |[r, g, b]| {
        let h0 = (r * m[0][0] + g * m[1][0] + b * m[2][0]).max(0.0);
        let h1 = (r * m[0][1] + g * m[1][1] + b * m[2][1]).max(0.0);
        let h2 = (r * m[0][2] + g * m[1][2] + b * m[2][2]).max(0.0);
        std::array::from_fn(|j| offset[j] + h0 * a[0][j] + h1 * a[1][j] + h2 * a[2][j])
    });
}

/// Brightness (factor) and contrast (factor around the mean of all samples) in place.
pub(crate) fn brightness_contrast(pixels: &mut [u8], brightness: f32, contrast: f32) {
    if brightness == 1.0 && contrast == 1.0 {
        return;
    }
    let mean = if contrast == 1.0 || pixels.is_empty() {
        0.0
    } else {
        let sum: u64 = pixels.chunks(1 << 16).map(|c| c.iter().map(|&v| u64::from(v)).sum::<u64>()).sum();
        (sum as f64 / pixels.len() as f64) as f32
    };
    let lut: [u8; 256] =
        std::array::from_fn(|v| (((v as f32 - mean) * contrast + mean) * brightness).round().clamp(0.0, 255.0) as u8);
    for v in pixels {
        *v = lut[*v as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hed_matrix_is_the_inverse() {
        let inv = crate::stain::linalg::invert3(RGB_FROM_HED).expect("the HED matrix is invertible");
        for (i, row) in RGB_FROM_HED.iter().enumerate() {
            for j in 0..3 {
                let v: f64 = row.iter().zip(&inv).map(|(r, inv_row)| r * inv_row[j]).sum();
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
        // skimage hed_from_rgb[0] = [1.87798274, -1.00767869, -0.55611582]
        assert!((inv[0][0] - 1.877_982_74).abs() < 1e-6 && (inv[0][1] + 1.007_678_69).abs() < 1e-6);
    }

    #[test]
    fn neutral_jitter_keeps_stained_pixels() {
        // Pixels inside the H&E cone (all densities ≥ 0) survive α = 1, β = 0 to within rounding.
        let mut px = vec![186, 132, 197, 76, 44, 133, 230, 200, 220, 255, 255, 255];
        let before = px.clone();
        stain_jitter(&mut px, [1.0; 3], [0.0; 3]);
        for (a, b) in px.iter().zip(&before) {
            assert!(a.abs_diff(*b) <= 1, "{px:?} vs {before:?}");
        }
    }

    #[test]
    fn more_haematoxylin_darkens_red_most() {
        let mut px = vec![186, 132, 197];
        stain_jitter(&mut px, [1.0; 3], [0.3, 0.0, 0.0]);
        assert_eq!(px, [153, 107, 181]); // numpy with skimage's matrices gives the same
    }

    #[test]
    fn brightness_and_contrast() {
        let mut px = vec![100, 100, 100, 200, 200, 200];
        brightness_contrast(&mut px, 1.0, 2.0); // mean 150 → 50, 250
        assert_eq!(px, [50, 50, 50, 250, 250, 250]);
        brightness_contrast(&mut px, 0.5, 1.0);
        assert_eq!(px, [25, 25, 25, 125, 125, 125]);
    }
}
