//! The random draw of one patch's augmentation, from an RNG that depends only on (seed, batch
//! index, position in the batch): the same batches whatever the thread count or timing.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::AugmentConfig;
use super::geometry::Dihedral;

/// The RNG of patch `position` of batch `batch`.
pub(crate) fn patch_rng(seed: u64, batch: usize, position: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(batch as u64).to_le_bytes());
    key[16..24].copy_from_slice(&(position as u64).to_le_bytes());
    key[24..].copy_from_slice(b"midogpat");
    ChaCha8Rng::from_seed(key)
}

/// Everything random about one patch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchAugment {
    /// Output pixels per source pixel (1 = no resampling).
    pub scale: f32,
    pub dihedral: Dihedral,
    /// HED (α, β) per channel, `None` when stain jitter is off.
    pub stain: Option<([f32; 3], [f32; 3])>,
    pub brightness: f32,
    pub contrast: f32,
    /// Fourier mixing: the bank entry to start looking from for a style of another image, and β.
    pub fourier: Option<(usize, f32)>,
}

impl PatchAugment {
    pub const IDENTITY: PatchAugment = PatchAugment {
        scale: 1.0,
        dihedral: Dihedral::IDENTITY,
        stain: None,
        brightness: 1.0,
        contrast: 1.0,
        fourier: None,
    };

    /// Draws in a fixed order; a disabled augmentation draws nothing (Fourier mixing draws last,
    /// so turning it on leaves every other augmentation of a patch as it was).
    pub fn sample(config: &AugmentConfig, rng: &mut impl Rng) -> PatchAugment {
        let scale = around_one(rng, config.scale_jitter);
        let flip_h = config.flips && rng.random_bool(0.5);
        let flip_v = config.flips && rng.random_bool(0.5);
        let rot90 = if config.rot90 { rng.random_range(0..4u8) } else { 0 };
        let sigma = config.stain_jitter;
        let stain = (sigma > 0.0).then(|| {
            let alpha = [(); 3].map(|_| rng.random_range(1.0 - sigma..=1.0 + sigma));
            let beta = [(); 3].map(|_| rng.random_range(-sigma..=sigma));
            (alpha, beta)
        });
        let brightness = around_one(rng, config.brightness);
        let contrast = around_one(rng, config.contrast);
        let fourier = config.fourier.and_then(|f| {
            let mixed = rng.random::<f32>() < f.probability;
            let entry = rng.random_range(0..f.bank_size);
            mixed.then_some((entry, f.beta))
        });
        PatchAugment { scale, dihedral: Dihedral { flip_h, flip_v, rot90 }, stain, brightness, contrast, fourier }
    }
}

/// A factor ~ U(1 − spread, 1 + spread); 1 without a draw when `spread` is 0.
fn around_one(rng: &mut impl Rng, spread: f32) -> f32 {
    if spread > 0.0 { rng.random_range(1.0 - spread..=1.0 + spread) } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_within_range() {
        let config = AugmentConfig::STANDARD;
        let a = PatchAugment::sample(&config, &mut patch_rng(7, 3, 2));
        assert_eq!(a, PatchAugment::sample(&config, &mut patch_rng(7, 3, 2)));
        assert_ne!(a, PatchAugment::sample(&config, &mut patch_rng(7, 3, 1)));
        let mut rots = [0; 4];
        for i in 0..400 {
            let p = PatchAugment::sample(&config, &mut patch_rng(1, i, 0));
            assert!((0.9..=1.1).contains(&p.scale) && (0.9..=1.1).contains(&p.brightness));
            let (alpha, beta) = p.stain.unwrap();
            assert!(alpha.iter().all(|a| (0.95..=1.05).contains(a)) && beta.iter().all(|b| b.abs() <= 0.05));
            rots[p.dihedral.rot90 as usize] += 1;
        }
        assert!(rots.iter().all(|&n| n > 60), "{rots:?}");
        assert_eq!(PatchAugment::sample(&AugmentConfig::NONE, &mut patch_rng(1, 1, 1)), PatchAugment::IDENTITY);
    }
}
