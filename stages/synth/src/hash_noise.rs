//! Position-keyed randomness. Every pixel-level random quantity (chromatin grain, fibres, sensor
//! noise, background nuclei) is a pure function of (seed, position), so any tile can be rendered
//! alone, in any order, on any thread, and the image is bit-identical.

/// SplitMix64 finaliser: a cheap bijective mixer with good avalanche.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a seed and two lattice coordinates (one multiply-xorshift round: cheap enough for
/// per-pixel use, well mixed for noise).
#[inline]
pub fn hash2(seed: u64, x: i64, y: i64) -> u64 {
    mix64(seed ^ (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (y as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
}

/// `x.floor()` without a libm call (the baseline x86-64 target has no rounding instruction).
#[inline]
pub fn fast_floor(x: f32) -> f32 {
    let t = x as i64 as f32;
    if t > x { t - 1.0 } else { t }
}

/// Derives an independent stream seed from a seed and a label.
#[inline]
pub fn derive(seed: u64, label: u64) -> u64 {
    mix64(seed ^ mix64(label.wrapping_add(0xD1B5_4A32_D192_ED03)))
}

/// Uniform in [0, 1) from the top 24 bits.
#[inline]
pub fn unit(h: u64) -> f32 {
    (h >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// Approximately standard normal from one hash (sum of four 16-bit uniforms, variance-matched).
#[inline]
pub fn gaussish(h: u64) -> f32 {
    let s = (h & 0xFFFF) + ((h >> 16) & 0xFFFF) + ((h >> 32) & 0xFFFF) + (h >> 48);
    (s as f32 * (1.0 / 65_536.0) - 2.0) * 1.732_050_8
}

/// Smooth 2-D value noise in [0, 1] with unit lattice spacing.
#[derive(Debug, Clone, Copy)]
pub struct ValueNoise {
    seed: u64,
}

impl ValueNoise {
    pub fn new(seed: u64) -> Self {
        ValueNoise { seed }
    }

    #[inline]
    pub fn at(&self, x: f32, y: f32) -> f32 {
        let xf = fast_floor(x);
        let yf = fast_floor(y);
        let (xi, yi) = (xf as i64, yf as i64);
        let fx = x - xf;
        let fy = y - yf;
        let sx = fx * fx * (3.0 - 2.0 * fx);
        let sy = fy * fy * (3.0 - 2.0 * fy);
        let v00 = unit(hash2(self.seed, xi, yi));
        let v10 = unit(hash2(self.seed, xi + 1, yi));
        let v01 = unit(hash2(self.seed, xi, yi + 1));
        let v11 = unit(hash2(self.seed, xi + 1, yi + 1));
        let a = v00 + (v10 - v00) * sx;
        let b = v01 + (v11 - v01) * sx;
        a + (b - a) * sy
    }

    /// Fractal sum of `octaves` octaves (each half the wavelength, amplitude ×`gain`),
    /// normalised to [0, 1]. Values concentrate around 0.5.
    pub fn fbm(&self, x: f32, y: f32, octaves: u32, gain: f32) -> f32 {
        let mut sum = 0.0;
        let mut amp = 1.0;
        let mut norm = 0.0;
        let (mut fx, mut fy) = (x, y);
        for o in 0..octaves {
            // Offset each octave so lattice points do not line up.
            let n = ValueNoise { seed: self.seed.wrapping_add(o as u64 * 0x632B_E59B_D9B4_E019) };
            sum += amp * n.at(fx + 17.3 * o as f32, fy - 9.1 * o as f32);
            norm += amp;
            amp *= gain;
            fx *= 2.03;
            fy *= 2.03;
        }
        sum / norm
    }
}

/// Smooth Hermite step from 0 at `e0` to 1 at `e1`.
#[inline]
pub fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_deterministic_bounded_and_continuous() {
        let n = ValueNoise::new(7);
        let mut lo: f32 = 1.0;
        let mut hi: f32 = 0.0;
        for i in 0..2000 {
            let x = i as f32 * 0.37;
            let v = n.at(x, x * 0.5);
            assert_eq!(v, ValueNoise::new(7).at(x, x * 0.5));
            assert!((0.0..=1.0).contains(&v));
            assert!((n.at(x + 1e-3, x * 0.5) - v).abs() < 0.01);
            lo = lo.min(v);
            hi = hi.max(v);
        }
        assert!(lo < 0.1 && hi > 0.9);
    }

    #[test]
    fn gaussish_has_unit_variance() {
        let n = 100_000;
        let (mut s, mut s2) = (0.0f64, 0.0f64);
        for i in 0..n {
            let g = gaussish(mix64(i)) as f64;
            s += g;
            s2 += g * g;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "{mean} {var}");
    }
}
