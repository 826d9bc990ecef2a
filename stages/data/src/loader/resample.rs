//! Bilinear resampling of a square RGB image to another size (scale jitter), in 8-bit fixed
//! point with pixel centres aligned (output pixel u samples source (u + ½)·src/dst − ½).

/// Reusable per-worker tables and row buffers.
#[derive(Debug, Default)]
pub(crate) struct Resampler {
    taps: Vec<Tap>,
    /// Two source rows resampled horizontally (values × 256), and which source rows they are.
    rows: [Vec<u16>; 2],
    row_ids: [Option<u32>; 2],
}

#[derive(Debug, Clone, Copy)]
struct Tap {
    i0: u32,
    i1: u32,
    /// Weight of `i1` in 1/256.
    w1: u32,
}

impl Resampler {
    /// `src` is `s` × `s`, `dst` is `d` × `d`, both interleaved RGB. Separable: each needed
    /// source row is resampled horizontally once, then output rows blend two such rows.
    pub(crate) fn resize(&mut self, src: &[u8], s: usize, dst: &mut [u8], d: usize) {
        let ratio = s as f64 / d as f64;
        self.taps.clear();
        self.taps.extend((0..d).map(|u| {
            let pos = ((u as f64 + 0.5) * ratio - 0.5).clamp(0.0, (s - 1) as f64);
            let i0 = pos.floor() as u32;
            let w1 = ((pos - f64::from(i0)) * 256.0).round() as u32;
            Tap { i0, i1: (i0 + 1).min(s as u32 - 1), w1 }
        }));
        self.row_ids = [None, None];
        for row in &mut self.rows {
            row.resize(d * 3, 0);
        }
        for (v, dst_row) in dst[..d * d * 3].chunks_exact_mut(d * 3).enumerate() {
            let tap = self.taps[v];
            let top = self.horizontal(src, s, tap.i0);
            let bottom = self.horizontal(src, s, tap.i1);
            let (top, bottom) = (&self.rows[top][..d * 3], &self.rows[bottom][..d * 3]);
            let (wy1, wy0) = (tap.w1, 256 - tap.w1);
            for ((out, &t), &b) in dst_row.iter_mut().zip(top).zip(bottom) {
                *out = ((u32::from(t) * wy0 + u32::from(b) * wy1 + (1 << 15)) >> 16) as u8;
            }
        }
    }

    /// Index into `rows` of source row `y` resampled horizontally, computing it if needed
    /// (rows are visited in increasing order, so two slots suffice).
    fn horizontal(&mut self, src: &[u8], s: usize, y: u32) -> usize {
        if let Some(slot) = self.row_ids.iter().position(|&id| id == Some(y)) {
            return slot;
        }
        // Replace the slot holding the smaller (older) row.
        let slot = match self.row_ids {
            [None, _] => 0,
            [_, None] => 1,
            [Some(a), Some(b)] => usize::from(b < a),
        };
        let line = &src[y as usize * s * 3..][..s * 3];
        for (tap, out) in self.taps.iter().zip(self.rows[slot].chunks_exact_mut(3)) {
            let (a, b) = (tap.i0 as usize * 3, tap.i1 as usize * 3);
            let (w1, w0) = (tap.w1, 256 - tap.w1);
            for c in 0..3 {
                out[c] = (u32::from(line[a + c]) * w0 + u32::from(line[b + c]) * w1) as u16;
            }
        }
        self.row_ids[slot] = Some(y);
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy_and_constant_stays_constant() {
        let src: Vec<u8> = (0..5 * 5 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let mut dst = vec![0; src.len()];
        Resampler::default().resize(&src, 5, &mut dst, 5);
        assert_eq!(dst, src);
        let flat = vec![77u8; 9 * 9 * 3];
        let mut up = vec![0; 13 * 13 * 3];
        Resampler::default().resize(&flat, 9, &mut up, 13);
        assert!(up.iter().all(|&v| v == 77));
    }

    #[test]
    fn upsampling_a_ramp_interpolates() {
        // 2 px: 0 and 200 → 4 px at source positions -0.25, 0.25, 0.75, 1.25 → 0, 50, 150, 200.
        let src = [0, 0, 0, 200, 200, 200, 0, 0, 0, 200, 200, 200];
        let mut dst = vec![0; 4 * 4 * 3];
        Resampler::default().resize(&src, 2, &mut dst, 4);
        let row: Vec<u8> = dst[..12].chunks(3).map(|p| p[0]).collect();
        assert_eq!(row, [0, 50, 150, 200]);
    }
}
