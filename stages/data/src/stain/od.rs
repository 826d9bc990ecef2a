//! Optical density tables: `od(v) = −ln((v + 1) / 256)` per byte (white 255 → 0), and the way
//! back, `v = 256 · e^(−od) − 1` rounded, through a table of [`STEPS_PER_OD`] entries per unit.

use std::sync::OnceLock;

/// Resolution of the way back: entries per unit of optical density.
pub const STEPS_PER_OD: f32 = 1024.0;
/// Densities beyond this are black (256 · e^−6 − 1 < 0.5).
pub const TABLE_LEN: usize = 6 * 1024;

struct Tables {
    od: [f32; 256],
    back: Box<[u8; TABLE_LEN]>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| Tables {
        od: std::array::from_fn(|v| -((v as f64 + 1.0) / 256.0).ln() as f32),
        back: Box::new(std::array::from_fn(|i| {
            (256.0 * (-(i as f64) / f64::from(STEPS_PER_OD)).exp() - 1.0).round().clamp(0.0, 255.0) as u8
        })),
    })
}

/// The optical density of one byte.
pub fn od(v: u8) -> f32 {
    tables().od[v as usize]
}

/// The per-byte density table.
pub fn od_table() -> &'static [f32; 256] {
    &tables().od
}

/// The byte of a density (negative densities are white).
pub fn byte_of(od: f32) -> u8 {
    let t = tables();
    t.back[(od * STEPS_PER_OD + 0.5).clamp(0.0, (TABLE_LEN - 1) as f32) as usize]
}

/// Applies `od_out = m · od_in` to interleaved RGB pixels in place.
pub fn apply_od_matrix(pixels: &mut [u8], m: &[[f32; 3]; 3]) {
    let t = tables();
    map_densities(pixels, &t.od, &t.back[..], STEPS_PER_OD, |[r, g, b]| {
        std::array::from_fn(|j| m[j][0] * r + m[j][1] * g + m[j][2] * b)
    });
}

/// Maps the optical densities of interleaved RGB pixels in place: `od_in` lookups in, `f` on
/// each pixel's three densities (branch-free code here vectorises over a block of 64 pixels),
/// lookups out of `back`, indexed by `od · steps_per_od` rounded and clamped to the table.
pub(crate) fn map_densities(
    pixels: &mut [u8],
    od_in: &[f32; 256],
    back: &[u8],
    steps_per_od: f32,
    f: impl Fn([f32; 3]) -> [f32; 3],
) {
    const BLOCK: usize = 64;
    let max_index = (back.len() - 1) as f32;
    let mut od = [[0f32; BLOCK]; 3];
    let mut index = [[0u16; BLOCK]; 3];
    for block in pixels.chunks_mut(BLOCK * 3) {
        for (i, px) in block.chunks_exact(3).enumerate() {
            for c in 0..3 {
                od[c][i] = od_in[px[c] as usize];
            }
        }
        for i in 0..BLOCK {
            let out = f([od[0][i], od[1][i], od[2][i]]);
            for j in 0..3 {
                index[j][i] = (out[j] * steps_per_od + 0.5).clamp(0.0, max_index) as u16;
            }
        }
        for (i, px) in block.chunks_exact_mut(3).enumerate() {
            for c in 0..3 {
                px[c] = back[index[c][i] as usize % back.len()];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_identity() {
        for v in 0..=255u8 {
            assert_eq!(byte_of(od(v)), v, "byte {v}");
        }
        assert_eq!(od(255), 0.0);
        let mut px: Vec<u8> = (0..=255u8).flat_map(|v| [v, 255 - v, v / 2]).collect();
        let before = px.clone();
        apply_od_matrix(&mut px, &[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        assert_eq!(px, before);
    }
}
