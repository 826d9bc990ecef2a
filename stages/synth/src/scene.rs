//! One synthetic slide image as a scene: its size and seed, its tissue, its ordinary nuclei, the
//! per-image staining, and the special cells (mitotic figures, hard negatives, unlabelled
//! look-alikes) with their positions. Built once per image from a seeded RNG; rendering any
//! region afterwards is a pure function of the scene.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, LogNormal, Normal, Poisson};
use serde::{Deserialize, Serialize};

use crate::cell_drawing::{CellDrawing, CellSpec};
use crate::hash_noise::{ValueNoise, derive};
use crate::imposter::{ImposterKind, draw_imposter};
use crate::mitosis::{MitoticPhase, draw_mitosis};
use crate::nucleus::BackgroundNuclei;
use crate::scanner_profile::ScannerProfile;
use crate::tissue::TissueModel;
use crate::tumour_profile::TumourProfile;

/// Which image to make: id (and so file name and scanner block), tumour type, size and seed.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePlan {
    pub id: u32,
    pub scanner: ScannerProfile,
    /// Human breast cancer (MIDOG 2021) unless the set has several tumour types.
    pub tumour: TumourProfile,
    pub width: u32,
    pub height: u32,
    pub seed: u64,
    /// Multiplier of the per-area rates of special cells.
    pub density: f64,
}

impl ImagePlan {
    pub fn file_name(&self) -> String {
        format!("{:03}.tiff", self.id)
    }
}

/// Lays out the images of a dataset: ids in the MIDOG blocks, sizes (real size × scale, with the
/// scanner's small per-image variation) and per-image seeds.
pub fn plan_images(
    profiles: &[ScannerProfile],
    images_per_scanner: u32,
    scale: f64,
    seed: u64,
    density: f64,
) -> Vec<ImagePlan> {
    let breast = TumourProfile::breast();
    profiles
        .iter()
        .flat_map(|p| (0..images_per_scanner).map(move |k| p.first_id + k).map(move |id| (id, p)))
        .map(|(id, p)| plan_image(id, p, &breast, scale, seed, density))
        .collect()
}

/// The images of one tumour type of a MIDOG++-like set: ids from the start of its MIDOG++ block,
/// on `scanner`.
pub fn plan_tumour_images(
    tumour: &TumourProfile,
    scanner: &ScannerProfile,
    images: u32,
    scale: f64,
    seed: u64,
    density: f64,
) -> Vec<ImagePlan> {
    (0..images).map(|k| plan_image(tumour.first_id + k, scanner, tumour, scale, seed, density)).collect()
}

fn plan_image(id: u32, p: &ScannerProfile, tumour: &TumourProfile, scale: f64, seed: u64, density: f64) -> ImagePlan {
    let image_seed = derive(seed, id as u64);
    let mut rng = ChaCha8Rng::seed_from_u64(derive(image_seed, 1));
    let n = Normal::new(0.0f64, 1.0).expect("valid normal");
    let jw: f64 = 1.0 + p.size_jitter * n.sample(&mut rng).clamp(-2.5, 2.5);
    let jh: f64 = 1.0 + p.size_jitter * n.sample(&mut rng).clamp(-2.5, 2.5);
    let width = ((p.full_size.0 as f64 * jw * scale).round() as u32).max(64);
    let height = ((p.full_size.1 as f64 * jh * scale).round() as u32).max(64);
    ImagePlan { id, scanner: p.clone(), tumour: tumour.clone(), width, height, seed: image_seed, density }
}

/// What a special cell is, for the truth file and for MIDOG.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruthClass {
    /// Annotated as category 1.
    Mitosis,
    /// Annotated as category 2.
    HardNegative,
    /// A look-alike nobody annotated (as in real slides, most dark cells are not labelled).
    Lookalike,
}

/// A special cell's true position and kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthObject {
    pub x: f64,
    pub y: f64,
    pub class: TruthClass,
    /// Phase of a mitotic figure or kind of imposter, snake_case.
    pub kind: String,
    /// Chromatin area drawn (µm²) and its haematoxylin amount.
    pub area_um2: f32,
    pub darkness: f32,
}

#[derive(Debug, Clone)]
pub struct SpecialCell {
    pub truth: TruthObject,
    pub drawing: CellDrawing,
    /// Distance from the centre that the drawing reaches (px).
    pub reach: f32,
}

/// Everything needed to render any region of one image.
#[derive(Debug, Clone)]
pub struct ImageScene {
    pub plan: ImagePlan,
    pub tissue: TissueModel,
    pub nuclei: BackgroundNuclei,
    pub cells: Vec<SpecialCell>,
    /// This image's stain optical densities and glass brightness (scanner's, jittered per slide).
    pub hematoxylin_od: [f32; 3],
    pub eosin_od: [f32; 3],
    pub white: [f32; 3],
    pub grain_noise: ValueNoise,
    pub sensor_seed: u64,
}

/// Median chromatin area of a mitotic figure and of its look-alikes (µm²) and its log spread:
/// MIDOG figures measure 26–28 µm² (IQR ≈ ×0.75–×1.3).
const FIGURE_AREA_UM2: f64 = 33.0;
const FIGURE_AREA_LOG_SD: f64 = 0.38;

impl ImageScene {
    pub fn build(plan: &ImagePlan) -> ImageScene {
        let p = &plan.scanner;
        let mut rng = ChaCha8Rng::seed_from_u64(derive(plan.seed, 2));
        let tissue = TissueModel::new(derive(plan.seed, 3), p.um_per_px, &mut rng);
        // Multiplying by the breast profile's factors of exactly 1 changes no bit of a MIDOG
        // 2021-like image.
        let t = &plan.tumour;
        let mut nuclei = BackgroundNuclei::new(
            derive(plan.seed, 4),
            p.um_per_px,
            rng.random_range(0.55..0.8),
            rng.random_range(0.9..1.15) * t.nucleus_size,
        );
        nuclei.spacing = t.nucleus_spacing;
        let jitter = Normal::new(0.0f32, p.stain_jitter).expect("valid normal");
        let hue = Normal::new(0.0f32, 0.03).expect("valid normal");
        let (gh, ge) = (jitter.sample(&mut rng).exp(), jitter.sample(&mut rng).exp());
        let hematoxylin_od = p.hematoxylin_od.map(|v| v * gh * (1.0 + hue.sample(&mut rng)));
        let eosin_od = p.eosin_od.map(|v| v * ge * (1.0 + hue.sample(&mut rng)));
        let bright = 1.0 + 0.01 * Normal::new(0.0f32, 1.0).expect("valid normal").sample(&mut rng);
        let white = p.white.map(|v| (v * bright).min(254.0));

        let mut scene = ImageScene {
            plan: plan.clone(),
            tissue,
            nuclei,
            cells: Vec::new(),
            hematoxylin_od,
            eosin_od,
            white,
            grain_noise: ValueNoise::new(derive(plan.seed, 5)),
            sensor_seed: derive(plan.seed, 6),
        };
        scene.place_special_cells(&mut rng);
        scene
    }

    /// Draws the numbers of special cells (negative-binomial: a gamma-distributed per-image rate,
    /// so counts are skewed and some images have none) and places them in tumour tissue.
    fn place_special_cells(&mut self, rng: &mut ChaCha8Rng) {
        let p = &self.plan.scanner;
        let area = (self.plan.width as f64 * self.plan.height as f64) / (p.full_size.0 as f64 * p.full_size.1 as f64);
        let k = 0.8;
        let g_mitosis = Gamma::new(k, 1.0 / k).expect("valid gamma").sample(rng);
        let g_other = 0.5 * g_mitosis + 0.5 * Gamma::new(1.5, 1.0 / 1.5).expect("valid gamma").sample(rng);
        let t = &self.plan.tumour;
        let base = area * self.plan.density;
        let n_mitoses = poisson(rng, p.mitoses_per_image * t.mitosis_rate * base * g_mitosis);
        let n_hard = poisson(rng, p.hard_negatives_per_image * t.imposter_rate * base * g_other);
        let n_lookalike = poisson(rng, p.hard_negatives_per_image * t.imposter_rate * 0.8 * base * g_other);
        let darkness_image: f32 = rng.random_range(0.95..1.15);
        let mut order: Vec<TruthClass> = std::iter::repeat_n(TruthClass::Mitosis, n_mitoses)
            .chain(std::iter::repeat_n(TruthClass::HardNegative, n_hard))
            .chain(std::iter::repeat_n(TruthClass::Lookalike, n_lookalike))
            .collect();
        // Interleave so that crowding does not systematically drop one class.
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        let area_dist = LogNormal::new(FIGURE_AREA_UM2.ln(), FIGURE_AREA_LOG_SD).expect("valid lognormal");
        let dark_dist = LogNormal::new(0.0, 0.12).expect("valid lognormal");
        let px_per_um = (1.0 / p.um_per_px) as f32;
        let (w, h) = (self.plan.width as f32, self.plan.height as f32);
        let margin = 26.0f32;
        for class in order {
            // Look-alikes are drawn slightly lighter and smaller so that, after their smoother
            // texture and outlines, their measured darkness and size match the figures'.
            // The tumour type changes its figures' size and darkness.
            let (dark_k, area_k) =
                if class == TruthClass::Mitosis { (t.figure_darkness, t.figure_area as f32) } else { (0.93, 0.88) };
            let spec = CellSpec {
                cx: 0.0,
                cy: 0.0,
                px_per_um,
                darkness: darkness_image * dark_k * dark_dist.sample(rng) as f32,
                area_um2: (area_k * area_dist.sample(rng) as f32).clamp(10.0, 70.0),
            };
            let (mut drawing, kind) = match class {
                TruthClass::Mitosis => {
                    let phase = MitoticPhase::sample(rng);
                    (draw_mitosis(rng, &spec, phase), snake(&phase))
                }
                _ => {
                    let kind = ImposterKind::sample(rng);
                    (draw_imposter(rng, &spec, kind), snake(&kind))
                }
            };
            let reach = drawing.reach_from(0.0, 0.0);
            let clear = drawing.clearance_px;
            for _ in 0..400 {
                // Whole-pixel positions, as MIDOG's integer boxes.
                let x = rng.random_range(margin..(w - margin).max(margin + 1.0)).round();
                let y = rng.random_range(margin..(h - margin).max(margin + 1.0)).round();
                let weight = self.tissue.sample(x, y).tumour_weight();
                if rng.random::<f32>() >= weight {
                    continue;
                }
                let crowded = self.cells.iter().any(|c| {
                    let d = ((c.truth.x as f32 - x).powi(2) + (c.truth.y as f32 - y).powi(2)).sqrt();
                    d < 0.85 * (clear + c.drawing.clearance_px)
                });
                if crowded {
                    continue;
                }
                drawing.translate(x, y);
                self.cells.push(SpecialCell {
                    truth: TruthObject {
                        x: x as f64,
                        y: y as f64,
                        class,
                        kind,
                        area_um2: spec.area_um2,
                        darkness: spec.darkness,
                    },
                    drawing,
                    reach,
                });
                break;
            }
        }
    }
}

fn poisson(rng: &mut impl Rng, lambda: f64) -> usize {
    if lambda <= 0.0 || !lambda.is_finite() {
        return 0;
    }
    Poisson::new(lambda).expect("positive rate").sample(rng) as usize
}

fn snake<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plans(scale: f64, density: f64) -> Vec<ImagePlan> {
        plan_images(&ScannerProfile::all(), 10, scale, 7, density)
    }

    #[test]
    fn ids_sizes_and_seeds_follow_midog() {
        let p = plans(1.0, 1.0);
        assert_eq!(p.len(), 40);
        assert_eq!((p[0].id, p[10].id, p[20].id, p[30].id), (1, 51, 101, 151));
        assert_eq!((p[0].width, p[0].height), (7215, 5412));
        assert_eq!(p[12].file_name(), "053.tiff");
        let small = plans(0.1, 1.0);
        assert!((small[0].width as i64 - 722).abs() <= 1 && (small[0].height as i64 - 541).abs() <= 1);
        assert!(small.iter().all(|s| s.seed != small[0].seed || s.id == 1));
    }

    #[test]
    fn counts_are_skewed_and_scale_with_density() {
        let all = plans(0.2, 25.0);
        let counts: Vec<usize> = all
            .iter()
            .map(|p| ImageScene::build(p).cells.iter().filter(|c| c.truth.class == TruthClass::Mitosis).count())
            .collect();
        let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
        // Expected ≈ 9–14 (scanner rates) × 0.04 × 25 ≈ 11.
        assert!(mean > 5.0 && mean < 20.0, "{counts:?}");
        let max = *counts.iter().max().unwrap();
        assert!(max as f64 > 1.8 * mean, "counts not skewed: {counts:?}");
    }

    #[test]
    fn tumour_types_differ_in_nucleus_size_density_and_figures() {
        use crate::tumour_profile::TumourProfile;
        let xr = ScannerProfile::xr();
        let stats = |name: &str| {
            let t = TumourProfile::by_name(name).unwrap();
            let (mut nuclei, mut radius, mut areas) = (0usize, 0f32, Vec::new());
            for plan in plan_tumour_images(&t, &xr, 6, 0.1, 3, 60.0) {
                let scene = ImageScene::build(&plan);
                let mut blobs = Vec::new();
                scene.nuclei.centred_in(&scene.tissue, 0.0, 0.0, plan.width as f32, plan.height as f32, &mut blobs);
                nuclei += blobs.len();
                radius += blobs.iter().map(|b| b.rx.max(b.ry)).sum::<f32>();
                areas.extend(
                    scene.cells.iter().filter(|c| c.truth.class == TruthClass::Mitosis).map(|c| c.truth.area_um2),
                );
            }
            areas.sort_by(f32::total_cmp);
            (nuclei, radius / nuclei as f32, areas[areas.len() / 2], areas.len())
        };
        let (lymphoma, melanoma, breast) =
            (stats("canine lymphosarcoma"), stats("human melanoma"), stats("human breast cancer"));
        assert!(lymphoma.0 as f64 > 1.3 * melanoma.0 as f64, "nuclei: {lymphoma:?} vs {melanoma:?}");
        assert!(melanoma.1 > 1.3 * lymphoma.1, "nucleus size: {lymphoma:?} vs {melanoma:?}");
        assert!(melanoma.2 > 1.4 * lymphoma.2, "figure area: {lymphoma:?} vs {melanoma:?}");
        assert!(lymphoma.3 as f64 > 1.4 * melanoma.3 as f64, "figure rate: {lymphoma:?} vs {melanoma:?}");
        assert!(breast.1 > lymphoma.1 && breast.1 < melanoma.1, "{breast:?}");
    }

    #[test]
    fn special_cells_do_not_overlap() {
        let p = &plans(0.2, 40.0)[3];
        let s = ImageScene::build(p);
        for (i, a) in s.cells.iter().enumerate() {
            for b in &s.cells[i + 1..] {
                let d = (a.truth.x - b.truth.x).hypot(a.truth.y - b.truth.y);
                assert!(d > 20.0, "{d}");
            }
        }
    }
}
