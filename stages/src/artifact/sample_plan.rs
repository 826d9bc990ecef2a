//! `plan.json`: the sample stage's output. It stores the sampling recipe and the images it draws
//! from, and expands deterministically into the patches of any epoch, so the plan for hundreds of
//! epochs costs kilobytes and the train stage needs no epoch count from upstream.

use engine::{Artifact, StageError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub const FILE: &str = "plan.json";

/// Where patches are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Uniformly anywhere in the image.
    Random,
    /// With probability `p_object` around a random mitotic figure of the image, else random.
    MitosisCentred,
    /// Around a mitotic figure (`p_mitosis`), a hard negative (`p_imposter`), or random.
    HardNegative,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanImage {
    pub id: u32,
    pub width: u32,
    pub height: u32,
    pub mitoses: Vec<[f64; 4]>,
    pub imposters: Vec<[f64; 4]>,
    /// Patches per epoch from this image when the sample stage balanced domains (else the
    /// recipe's `patches_per_image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patches: Option<u32>,
}

/// One patch: its image and top-left corner (level-0 px; may reach over the border, which
/// reads as white).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPatch {
    pub image_id: u32,
    pub x: i64,
    pub y: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub strategy: Strategy,
    pub patches_per_image: u32,
    pub patch_size: u32,
    pub seed: u64,
    pub p_object: f64,
    pub jitter: f64,
    pub p_mitosis: f64,
    pub p_imposter: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplePlan {
    pub recipe: Recipe,
    pub train: Vec<PlanImage>,
    pub val: Vec<PlanImage>,
    /// Fixed, uniformly random validation patches (validation sampling is never biased).
    pub val_patches: Vec<PlannedPatch>,
}

impl SamplePlan {
    pub fn load(artifact: &Artifact) -> Result<SamplePlan, StageError> {
        super::read_json(&artifact.dir.join(FILE))
    }

    /// The training patches of `epoch` (0-based), shuffled. Same recipe and epoch: same patches.
    pub fn epoch(&self, epoch: u32) -> Vec<PlannedPatch> {
        let r = &self.recipe;
        let mut rng = ChaCha8Rng::seed_from_u64(mix(r.seed, epoch as u64 + 1));
        let mut out = Vec::with_capacity(self.train.len() * r.patches_per_image as usize);
        for img in &self.train {
            for _ in 0..img.patches.unwrap_or(r.patches_per_image) {
                out.push(place(img, r, &mut rng));
            }
        }
        shuffle(&mut out, &mut rng);
        out
    }

    pub fn image(&self, id: u32) -> Option<&PlanImage> {
        self.train.iter().chain(&self.val).find(|i| i.id == id)
    }

    /// Fraction of `patches` whose area contains the centre of a mitotic figure.
    pub fn holding_fraction(&self, patches: &[PlannedPatch]) -> f64 {
        if patches.is_empty() {
            return 0.0;
        }
        let p = self.recipe.patch_size as f64;
        let holding = patches
            .iter()
            .filter(|patch| {
                self.image(patch.image_id).is_some_and(|img| {
                    img.mitoses.iter().any(|b| {
                        let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
                        cx >= patch.x as f64
                            && cx < patch.x as f64 + p
                            && cy >= patch.y as f64
                            && cy < patch.y as f64 + p
                    })
                })
            })
            .count();
        holding as f64 / patches.len() as f64
    }
}

/// Uniform random validation patches, `per_image` per image.
pub fn uniform_patches(images: &[PlanImage], per_image: u32, patch_size: u32, seed: u64) -> Vec<PlannedPatch> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, 0));
    let mut out = Vec::new();
    for img in images {
        for _ in 0..per_image {
            out.push(random_patch(img, patch_size, &mut rng));
        }
    }
    out
}

fn place(img: &PlanImage, r: &Recipe, rng: &mut ChaCha8Rng) -> PlannedPatch {
    let u: f64 = rng.random();
    let target = match r.strategy {
        Strategy::Random => None,
        Strategy::MitosisCentred => (u < r.p_object).then_some(&img.mitoses),
        Strategy::HardNegative => {
            if u < r.p_mitosis {
                Some(&img.mitoses)
            } else if u < r.p_mitosis + r.p_imposter {
                Some(&img.imposters)
            } else {
                None
            }
        }
    };
    match target {
        Some(boxes) if !boxes.is_empty() => {
            let b = boxes[rng.random_range(0..boxes.len())];
            around(img, b, r.patch_size, r.jitter, rng)
        }
        // Images without such objects fall back to random placement.
        _ => random_patch(img, r.patch_size, rng),
    }
}

/// A patch holding box `b` whole: centred on it when `jitter` = 0, anywhere that keeps the box
/// inside when `jitter` = 1.
fn around(img: &PlanImage, b: [f64; 4], patch: u32, jitter: f64, rng: &mut ChaCha8Rng) -> PlannedPatch {
    let p = patch as f64;
    let axis = |lo: f64, hi: f64, rng: &mut ChaCha8Rng| -> i64 {
        let centred = (lo + hi) / 2.0 - p / 2.0;
        let slack = ((p - (hi - lo)) / 2.0).max(0.0);
        let offset = if jitter > 0.0 && slack > 0.0 { jitter * rng.random_range(-slack..=slack) } else { 0.0 };
        (centred + offset).round() as i64
    };
    let x = axis(b[0], b[2], rng);
    let y = axis(b[1], b[3], rng);
    PlannedPatch { image_id: img.id, x, y }
}

fn random_patch(img: &PlanImage, patch: u32, rng: &mut ChaCha8Rng) -> PlannedPatch {
    let span = |size: u32, rng: &mut ChaCha8Rng| -> i64 {
        if size > patch { rng.random_range(0..=(size - patch) as i64) } else { (size as i64 - patch as i64) / 2 }
    };
    let x = span(img.width, rng);
    let y = span(img.height, rng);
    PlannedPatch { image_id: img.id, x, y }
}

fn shuffle(v: &mut [PlannedPatch], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

/// Mixes a seed with a stream index (SplitMix64 finaliser) so epochs get independent streams.
pub fn mix(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: u32, mitoses: usize) -> PlanImage {
        let mitoses = (0..mitoses).map(|i| {
            let x = 300.0 + 400.0 * i as f64;
            [x, 600.0, x + 50.0, 650.0]
        });
        PlanImage {
            id,
            width: 4000,
            height: 3000,
            mitoses: mitoses.collect(),
            imposters: vec![[1000.0, 1000.0, 1050.0, 1050.0]],
            patches: None,
        }
    }

    fn plan(strategy: Strategy, jitter: f64) -> SamplePlan {
        SamplePlan {
            recipe: Recipe {
                strategy,
                patches_per_image: 200,
                patch_size: 512,
                seed: 7,
                p_object: 0.5,
                jitter,
                p_mitosis: 0.4,
                p_imposter: 0.3,
            },
            train: (0..10).map(|i| image(i, (i % 4) as usize)).collect(),
            val: vec![],
            val_patches: vec![],
        }
    }

    #[test]
    fn epochs_are_deterministic_and_distinct() {
        let p = plan(Strategy::MitosisCentred, 1.0);
        assert_eq!(p.epoch(3), p.epoch(3));
        assert_ne!(p.epoch(3), p.epoch(4));
        assert_eq!(p.epoch(0).len(), 2000);
    }

    #[test]
    fn mitosis_centred_share_is_half_plus_half_the_random_share() {
        // Images without mitoses fall back to random, so compare on images that have some.
        let mut centred = plan(Strategy::MitosisCentred, 1.0);
        centred.train.retain(|i| !i.mitoses.is_empty());
        let mut random = centred.clone();
        random.recipe.strategy = Strategy::Random;
        let (mut c, mut r) = (0.0, 0.0);
        for e in 0..5 {
            c += centred.holding_fraction(&centred.epoch(e)) / 5.0;
            r += random.holding_fraction(&random.epoch(e)) / 5.0;
        }
        let expected = 0.5 + 0.5 * r;
        assert!((c - expected).abs() < 0.03, "centred {c:.3}, random {r:.3}, expected {expected:.3}");
    }

    #[test]
    fn jitter_zero_centres_the_figure_exactly() {
        let p = plan(Strategy::MitosisCentred, 0.0);
        let mut centred = 0;
        for patch in p.epoch(0) {
            let img = p.image(patch.image_id).unwrap();
            for b in &img.mitoses {
                let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
                if (patch.x as f64 + 256.0 - cx).abs() <= 0.5 && (patch.y as f64 + 256.0 - cy).abs() <= 0.5 {
                    centred += 1;
                }
            }
        }
        let with_mitoses = p.epoch(0).iter().filter(|q| !p.image(q.image_id).unwrap().mitoses.is_empty()).count();
        let share = centred as f64 / with_mitoses as f64;
        assert!((share - 0.5).abs() < 0.06, "share of exactly centred patches {share}");
    }

    #[test]
    fn jittered_patches_keep_the_box_whole() {
        let p = plan(Strategy::HardNegative, 1.0);
        for patch in p.epoch(1) {
            let img = p.image(patch.image_id).unwrap();
            // Every patch that overlaps an object's centre region holds it whole or is random.
            for b in img.mitoses.iter().chain(&img.imposters) {
                let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
                if (patch.x as f64 + 256.0 - cx).abs() < 1.0 && (patch.y as f64 + 256.0 - cy).abs() < 1.0 {
                    assert!(b[0] >= patch.x as f64 && b[2] <= patch.x as f64 + 512.0);
                }
            }
        }
    }
}
