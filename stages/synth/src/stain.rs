//! Colour through stain physics: per-pixel haematoxylin and eosin amounts become RGB by
//! Beer–Lambert with a scanner's stain optical densities, and back into H/E/D channels exactly as
//! scikit-image's `rgb2hed` does (used by the appearance statistics and the baseline detector).

use std::sync::LazyLock;

/// Transmitted intensity (0–255, unclamped) of a pixel with `h` units of haematoxylin and `e` of
/// eosin: `white · exp(−(h·H + e·E))` per channel.
#[inline]
pub fn beer_lambert(white: &[f32; 3], h_od: &[f32; 3], e_od: &[f32; 3], h: f32, e: f32) -> [f32; 3] {
    let mut out = [0.0f32; 3];
    for c in 0..3 {
        out[c] = white[c] * (-(h * h_od[c] + e * e_od[c])).exp();
    }
    out
}

/// scikit-image's `rgb_from_hed` (Ruifrok & Johnston) rows: haematoxylin, eosin, DAB.
const RGB_FROM_HED: [[f64; 3]; 3] = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]];

fn invert3(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let mut inv = [[0.0; 3]; 3];
    for (i, row) in inv.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            // Cofactor of (j, i) for the transpose.
            let (r0, r1) = match j {
                0 => (1, 2),
                1 => (0, 2),
                _ => (0, 1),
            };
            let (c0, c1) = match i {
                0 => (1, 2),
                1 => (0, 2),
                _ => (0, 1),
            };
            let minor = m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
            let sign = if (i + j) % 2 == 0 { 1.0 } else { -1.0 };
            *v = sign * minor / det;
        }
    }
    inv
}

static HED_FROM_RGB: LazyLock<[[f32; 3]; 3]> = LazyLock::new(|| {
    let inv = invert3(&RGB_FROM_HED);
    let mut out = [[0.0f32; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] = inv[i][j] as f32;
        }
    }
    out
});

/// `-ln(v/255) / -ln(1e-6)` for every byte value, as scikit-image computes it (values floored at
/// 1e-6 before the log).
static LOG_ADJUSTED: LazyLock<[f32; 256]> = LazyLock::new(|| {
    let mut t = [0.0f32; 256];
    let log_adjust = (1e-6f64).ln();
    for (v, o) in t.iter_mut().enumerate() {
        let x = (v as f64 / 255.0).max(1e-6);
        *o = (x.ln() / log_adjust) as f32;
    }
    t
});

/// scikit-image `rgb2hed` of one 8-bit pixel: `max(0, (ln(rgb)/ln(1e-6)) · hed_from_rgb)`.
#[inline]
pub fn rgb2hed(rgb: [u8; 3]) -> [f32; 3] {
    let t = &*LOG_ADJUSTED;
    let m = &*HED_FROM_RGB;
    let v = [t[rgb[0] as usize], t[rgb[1] as usize], t[rgb[2] as usize]];
    let mut out = [0.0f32; 3];
    for (j, o) in out.iter_mut().enumerate() {
        *o = (v[0] * m[0][j] + v[1] * m[1][j] + v[2] * m[2][j]).max(0.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn inverse_is_an_inverse() {
        let inv = invert3(&RGB_FROM_HED);
        for i in 0..3 {
            for j in 0..3 {
                let s: f64 = (0..3).map(|k| RGB_FROM_HED[i][k] * inv[k][j]).sum();
                assert!((s - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn rgb2hed_matches_scikit_image_values() {
        // skimage.color.rgb2hed([[[76, 44, 133]]]) and of white (all zeros after the clamp).
        let hed = rgb2hed([76, 44, 133]);
        let expected = [0.127_81, 0.033_39, 0.008_18];
        for c in 0..3 {
            assert!((hed[c] - expected[c]).abs() < 1e-4, "{hed:?}");
        }
        assert_eq!(rgb2hed([255, 255, 255]), [0.0, 0.0, 0.0]);
    }

    #[test]
    fn beer_lambert_of_no_stain_is_white() {
        let w = [240.0, 238.0, 245.0];
        assert_eq!(beer_lambert(&w, &[1.0; 3], &[1.0; 3], 0.0, 0.0), w);
    }
}
