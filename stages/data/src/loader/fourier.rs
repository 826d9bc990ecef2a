//! Fourier-domain mixing of a square RGB patch with the amplitude spectrum of another (FDA,
//! Yang & Soatto 2020; the amplitude blend of Xu et al. 2021): per channel, the amplitude of
//! the low frequencies becomes `|X| + β·(A_style − |X|)` while the phase of `X` is kept, so
//! β = 0 leaves the patch as it is and β = 1 replaces the low-frequency amplitude. Scanner
//! colour, brightness and blur live mostly in the low-frequency amplitude; the cell shapes that
//! a detector needs live in the phase.
//!
//! The low-frequency window is `|ky| < b, |kx| < b` with `b = ⌊window · n⌋` (FDA's `L`), at most
//! n / 2. Only that window changes, so the work is:
//! - forward: a real FFT of every row, then complex FFTs of the `b` lowest-frequency columns;
//! - back: the change `Δ` of the window only, inverse FFTs of its `b` columns, inverse real FFTs
//!   of the rows, and `pixel + Δ-image` rounded. Outside the window nothing is touched, and a
//!   window that does not change (β = 0, or a patch mixed with its own amplitude) changes no pixel.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};

/// The low-frequency amplitudes of the three channels of one patch: channel-major,
/// then `ky` in `0, 1, …, b − 1, −(b − 1), …, −1`, then `kx` in `0 … b − 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct LowAmplitude {
    pub size: usize,
    pub b: usize,
    pub values: Vec<f32>,
}

/// FFT plans and scratch buffers for one patch size and window (one per loader thread).
pub struct FourierMixer {
    n: usize,
    b: usize,
    row_fwd: Arc<dyn RealToComplex<f32>>,
    row_inv: Arc<dyn ComplexToReal<f32>>,
    col_fwd: Arc<dyn Fft<f32>>,
    col_inv: Arc<dyn Fft<f32>>,
    row_in: Vec<f32>,
    row_spec: Vec<Complex<f32>>,
    real_scratch: Vec<Complex<f32>>,
    /// `n × b` row spectra of the low columns, column-major (one column of length n per kx).
    columns: Vec<Complex<f32>>,
    col_scratch: Vec<Complex<f32>>,
    /// `n × n` change of one channel.
    delta: Vec<f32>,
}

impl std::fmt::Debug for FourierMixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FourierMixer").field("n", &self.n).field("b", &self.b).finish()
    }
}

/// Half-side of the low-frequency window of an `n`-pixel patch.
pub fn window_half_side(n: usize, window: f32) -> usize {
    ((n as f64 * f64::from(window)).floor() as usize).min(n / 2)
}

impl FourierMixer {
    /// Plans for `n × n` patches and a window of `b = ⌊window · n⌋`.
    pub fn new(n: usize, window: f32) -> FourierMixer {
        let b = window_half_side(n, window);
        let mut real = RealFftPlanner::<f32>::new();
        let mut complex = FftPlanner::<f32>::new();
        let row_fwd = real.plan_fft_forward(n);
        let row_inv = real.plan_fft_inverse(n);
        let col_fwd = complex.plan_fft_forward(n);
        let col_inv = complex.plan_fft_inverse(n);
        let scratch = row_fwd.get_scratch_len().max(row_inv.get_scratch_len());
        let col_scratch = col_fwd.get_inplace_scratch_len().max(col_inv.get_inplace_scratch_len());
        FourierMixer {
            n,
            b,
            row_in: vec![0.0; n],
            row_spec: vec![Complex::default(); n / 2 + 1],
            real_scratch: vec![Complex::default(); scratch],
            columns: vec![Complex::default(); n * b],
            col_scratch: vec![Complex::default(); col_scratch],
            delta: vec![0.0; n * n],
            row_fwd,
            row_inv,
            col_fwd,
            col_inv,
        }
    }

    pub fn size(&self) -> usize {
        self.n
    }

    /// Rows of the window in storage order (`0 … b − 1`, then `n − b + 1 … n − 1`).
    fn window_rows(&self) -> impl Iterator<Item = usize> + use<> {
        let (n, b) = (self.n, self.b);
        (0..b).chain(if b > 1 { n - b + 1..n } else { n..n })
    }

    fn window_len(&self) -> usize {
        (2 * self.b).saturating_sub(1) * self.b
    }

    /// The window's complex spectrum of channel `c` of `pixels` (n × n interleaved RGB), in
    /// [`LowAmplitude`] order.
    fn low_spectrum(&mut self, pixels: &[u8], c: usize, out: &mut Vec<Complex<f32>>) {
        let (n, b) = (self.n, self.b);
        for y in 0..n {
            let row = &pixels[y * n * 3..(y + 1) * n * 3];
            for (v, px) in self.row_in.iter_mut().zip(row.chunks_exact(3)) {
                *v = f32::from(px[c]);
            }
            // Lengths are the planned ones, so the only error (a wrong buffer length) cannot occur.
            let _ = self.row_fwd.process_with_scratch(&mut self.row_in, &mut self.row_spec, &mut self.real_scratch);
            for kx in 0..b {
                self.columns[kx * n + y] = self.row_spec[kx];
            }
        }
        for kx in 0..b {
            self.col_fwd.process_with_scratch(&mut self.columns[kx * n..(kx + 1) * n], &mut self.col_scratch);
        }
        out.clear();
        let rows: Vec<usize> = self.window_rows().collect();
        for ky in rows {
            for kx in 0..b {
                out.push(self.columns[kx * n + ky]);
            }
        }
    }

    /// The low-frequency amplitude of an `n × n` RGB patch (a style for [`FourierMixer::mix`]).
    pub fn amplitude(&mut self, pixels: &[u8]) -> LowAmplitude {
        let mut values = Vec::with_capacity(3 * self.window_len());
        let mut spec = Vec::new();
        for c in 0..3 {
            self.low_spectrum(pixels, c, &mut spec);
            values.extend(spec.iter().map(|z| z.norm()));
        }
        LowAmplitude { size: self.n, b: self.b, values }
    }

    /// Mixes `pixels` (n × n interleaved RGB, in place) towards the low-frequency amplitude
    /// `style` with ratio `beta` ∈ [0, 1], keeping the phase.
    pub fn mix(&mut self, pixels: &mut [u8], style: &LowAmplitude, beta: f32) {
        let (n, b) = (self.n, self.b);
        assert_eq!((style.size, style.b), (n, b), "style spectrum of another patch size or window");
        if beta == 0.0 || b == 0 {
            return;
        }
        let len = self.window_len();
        let mut spec = Vec::with_capacity(len);
        let scale = 1.0 / (n * n) as f32;
        for c in 0..3 {
            self.low_spectrum(pixels, c, &mut spec);
            let target = &style.values[c * len..(c + 1) * len];
            // Δ = X · β (A − |X|) / |X|: exactly zero where the amplitudes agree.
            let mut changed = false;
            let delta: Vec<Complex<f32>> = spec
                .iter()
                .zip(target)
                .map(|(&x, &a)| {
                    let m = x.norm();
                    let d = if m > 0.0 {
                        x * (beta * (a - m) / m)
                    } else {
                        Complex::new(beta * a, 0.0) // no phase to keep: take the style's with phase 0
                    };
                    changed |= d != Complex::default();
                    d
                })
                .collect();
            if !changed {
                continue;
            }
            self.columns.fill(Complex::default());
            let rows: Vec<usize> = self.window_rows().collect();
            for (i, ky) in rows.into_iter().enumerate() {
                for kx in 0..b {
                    self.columns[kx * n + ky] = delta[i * b + kx];
                }
            }
            for kx in 0..b {
                self.col_inv.process_with_scratch(&mut self.columns[kx * n..(kx + 1) * n], &mut self.col_scratch);
            }
            for y in 0..n {
                self.row_spec.fill(Complex::default());
                for kx in 0..b {
                    self.row_spec[kx] = self.columns[kx * n + y];
                }
                // A real signal's DC (and, for even n, Nyquist) bin is real; the inverse real FFT
                // requires it, and the window's column 0 is Hermitian, so this is rounding only.
                self.row_spec[0].im = 0.0;
                let out = &mut self.delta[y * n..(y + 1) * n];
                let _ = self.row_inv.process_with_scratch(&mut self.row_spec, out, &mut self.real_scratch);
            }
            for (px, d) in pixels.chunks_exact_mut(3).zip(&self.delta) {
                px[c] = (f32::from(px[c]) + d * scale).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A textured patch: smooth colour gradients plus noise and a few dark blobs.
    fn patch(n: usize, seed: u64, tint: [f32; 3]) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut p = vec![0u8; n * n * 3];
        for y in 0..n {
            for x in 0..n {
                let blob = ((x as f32 / 9.0).sin() * (y as f32 / 7.0).cos()).max(0.0) * 90.0;
                for c in 0..3 {
                    let v = tint[c] - blob * (1.0 - 0.3 * c as f32) + rng.random_range(-12.0..12.0);
                    p[(y * n + x) * 3 + c] = v.clamp(0.0, 255.0) as u8;
                }
            }
        }
        p
    }

    fn mean(p: &[u8], c: usize) -> f64 {
        p.chunks_exact(3).map(|px| f64::from(px[c])).sum::<f64>() / (p.len() / 3) as f64
    }

    #[test]
    fn beta_zero_is_the_identity() {
        let mut m = FourierMixer::new(64, 0.1);
        let style = m.amplitude(&patch(64, 2, [120.0, 200.0, 90.0]));
        let original = patch(64, 1, [200.0, 140.0, 210.0]);
        let mut p = original.clone();
        m.mix(&mut p, &style, 0.0);
        assert_eq!(p, original);
    }

    #[test]
    fn a_patch_mixed_with_itself_is_the_identity() {
        for (n, window) in [(64, 0.1), (96, 0.05), (63, 0.2)] {
            let mut m = FourierMixer::new(n, window);
            let original = patch(n, 3, [190.0, 130.0, 200.0]);
            let own = m.amplitude(&original);
            for beta in [0.3, 1.0] {
                let mut p = original.clone();
                m.mix(&mut p, &own, beta);
                assert_eq!(p, original, "n {n}, window {window}, beta {beta}");
            }
        }
    }

    #[test]
    fn full_replacement_takes_the_style_colour_and_keeps_the_structure() {
        let n = 64;
        let mut m = FourierMixer::new(n, 0.05);
        let style_patch = patch(n, 5, [110.0, 190.0, 120.0]);
        let style = m.amplitude(&style_patch);
        let original = patch(n, 4, [200.0, 130.0, 205.0]);
        let mut p = original.clone();
        m.mix(&mut p, &style, 1.0);
        // The DC amplitude (the mean) is the style's: every channel mean moves to the style's.
        for c in 0..3 {
            let (got, want, was) = (mean(&p, c), mean(&style_patch, c), mean(&original, c));
            assert!((got - want).abs() < 0.2 * (want - was).abs() + 1.0, "channel {c}: {was} → {got}, style {want}");
        }
        // Half way: the means move half way.
        let mut half = original.clone();
        m.mix(&mut half, &style, 0.5);
        let (got, want) = (mean(&half, 0), (mean(&style_patch, 0) + mean(&original, 0)) / 2.0);
        assert!((got - want).abs() < 3.0, "{got} vs {want}");
        // The phase is kept: the mixed patch still correlates with the original's detail.
        let detail = |q: &[u8], i: usize| f64::from(q[i * 3]) - f64::from(q[(i + 1) * 3]);
        let (mut num, mut da, mut db) = (0.0, 0.0, 0.0);
        for i in 0..n * n - 1 {
            let (a, b) = (detail(&original, i), detail(&p, i));
            num += a * b;
            da += a * a;
            db += b * b;
        }
        assert!(num / (da * db).sqrt() > 0.9, "high-frequency detail lost");
    }

    #[test]
    fn the_window_only_changes_low_frequencies() {
        // A style that differs only in a high frequency (a 2-px checkerboard) changes nothing.
        let n = 64;
        let mut m = FourierMixer::new(n, 0.1);
        let original = patch(n, 8, [180.0, 140.0, 190.0]);
        let mut checker = original.clone();
        for (i, px) in checker.chunks_exact_mut(3).enumerate() {
            let (x, y) = (i % n, i / n);
            if (x + y) % 2 == 0 {
                px.iter_mut().for_each(|v| *v = v.saturating_add(40));
            }
        }
        let base = m.amplitude(&original);
        let style = m.amplitude(&checker);
        // The checkerboard adds its mean (DC) too; outside DC the window's amplitudes barely move.
        let len = base.values.len() / 3;
        let max_rel = base.values[1..len]
            .iter()
            .zip(&style.values[1..len])
            .map(|(a, b)| (a - b).abs() / a.max(1.0))
            .fold(0.0f32, f32::max);
        assert!(max_rel < 0.35, "{max_rel}");
        assert_eq!(window_half_side(512, 0.01), 5);
        assert_eq!(window_half_side(512, 0.9), 256);
        let empty = FourierMixer::new(8, 0.01);
        assert_eq!(empty.b, 0);
    }
}
