//! Domain-adversarial training inside the train stage: the domain classifier (own `VarStore`
//! and optimiser, so detector checkpoints stay free of it), the domain of every patch, the
//! unlabelled patches added to each batch, and the training step that adds the domain loss.
//!
//! A batch is `labelled` patches with targets followed by the unlabelled ones; the detector's
//! heads (and so its loss) see only the first `labelled` images
//! ([`midog_model::Detector::losses_with_features`]), the domain classifier sees all of them.

use std::path::Path;

use engine::{StageContext, StageError};
use midog_data::loader::{FourierMix, LoaderImage, PatchSpec};
use midog_model::{Detector, DomainClassifier, LossScaler, Precision, PrecisionExt, Targets};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stages::artifact::SplitSets;
use stages::artifact::dataset_manifest::LoadedDataset;
use tch::{Device, Kind, Tensor, nn};
use torch_stage_defs::domain_generalization::{DomainAdversarialParams, StyleSource};
use torch_stage_defs::train::TrainParams;

use crate::image_set::ImageSet;
use crate::optim::FlatOptimizer;
use crate::stain_norm::StainReference;

/// What domain generalisation adds to the train stage's inputs.
pub struct DgInputs {
    /// The loader's images: the training images, then the unlabelled ones (never with boxes).
    pub images: Vec<LoaderImage>,
    /// Scanner of each loader image.
    pub scanners: Vec<String>,
    /// Loader index of the first unlabelled image, and the unlabelled images' sizes.
    pub first_unlabelled: usize,
    pub unlabelled_sizes: Vec<(u32, u32)>,
    pub fourier: Option<FourierMix>,
    pub stain: Option<StainReference>,
    pub trainer: Option<DomainTrainer>,
}

impl DgInputs {
    /// Unlabelled patches added to each batch.
    pub fn unlabelled_per_batch(&self) -> usize {
        self.trainer.as_ref().map_or(0, |t| t.params.unlabelled_per_batch)
    }
}

/// Sets up stain normalisation (reference from the training images, every image's map, also on
/// the validation images `val`), the unlabelled images, Fourier styles and the domain classifier.
pub fn prepare(
    p: &TrainParams,
    ctx: &StageContext,
    dataset: &LoadedDataset,
    train: &ImageSet,
    val: &mut ImageSet,
    device: Device,
) -> Result<DgInputs, StageError> {
    let split = SplitSets::load(ctx.ancestor("split")?)?;
    let mut images = train.images.clone();
    let mut scanners = vec![String::new(); images.len()];
    for (id, &i) in &train.index {
        scanners[i] = dataset.image(*id)?.scanner.clone();
    }
    let da = p.domain_adversarial.as_ref();
    let fourier = p.augment.fourier.as_ref();
    let want_unlabelled =
        da.is_some_and(|d| d.unlabelled_per_batch > 0) || fourier.is_some_and(|f| f.styles != StyleSource::Training);
    if want_unlabelled && split.unlabelled.is_empty() {
        let (key, fix) = if da.is_some_and(|d| d.unlabelled_per_batch > 0) {
            (["domain_adversarial", "unlabelled_per_batch"].as_slice(), "set unlabelled_per_batch = 0")
        } else {
            (["augment", "fourier", "styles"].as_slice(), "set styles = \"training\"")
        };
        return Err(ctx.param_error(
            key,
            format!(
                "the split keeps no unlabelled images (images of a scanner without labels, e.g. GT450, that are not test images); {fix}, or use a dataset with unlabelled images"
            ),
        ));
    }
    let first_unlabelled = images.len();
    let mut unlabelled_sizes = Vec::new();
    if want_unlabelled {
        for id in &split.unlabelled {
            let img = dataset.image(*id)?;
            images.push(LoaderImage { path: dataset.path_of(img), boxes: Vec::new(), stain: None });
            scanners.push(img.scanner.clone());
            unlabelled_sizes.push((img.width, img.height));
        }
    }

    let stain = match p.stain_norm {
        Some(method) => {
            let what = format!("stain normalisation ({})", method.method().name());
            let located = |e: StageError| ctx.param_error(&["stain_norm"], e);
            let paths: Vec<_> = train.images.iter().map(|i| i.path.clone()).collect();
            let reference = crate::stain_norm::reference(&paths, method.method(), &what).map_err(located)?;
            let all: Vec<_> = images.iter().map(|i| i.path.clone()).collect();
            for (image, t) in images.iter_mut().zip(reference.transforms(&all, &what).map_err(located)?) {
                image.stain = t;
            }
            let val_paths: Vec<_> = val.images.iter().map(|i| i.path.clone()).collect();
            for (image, t) in val.images.iter_mut().zip(reference.transforms(&val_paths, &what).map_err(located)?) {
                image.stain = t;
            }
            tracing::info!(
                "stain normalisation ({}) to the reference of {} training images",
                method.method().name(),
                reference.images
            );
            Some(reference)
        }
        None => None,
    };

    let fourier = fourier.map(|f| FourierMix {
        beta: f.beta as f32,
        window: f.window as f32,
        probability: f.probability as f32,
        bank_size: f.bank_size,
        style_images: match f.styles {
            StyleSource::Training => [0, first_unlabelled],
            StyleSource::Unlabelled => [first_unlabelled, images.len()],
            StyleSource::All => [0, images.len()],
        },
    });

    let trainer = match da {
        None => None,
        Some(d) => {
            let mut domains: Vec<String> = scanners[..first_unlabelled].to_vec();
            if d.unlabelled_per_batch > 0 {
                domains.extend_from_slice(&scanners[first_unlabelled..]);
            }
            domains.sort();
            domains.dedup();
            if domains.len() < 2 {
                let why = if d.unlabelled_per_batch == 0 {
                    "unlabelled_per_batch = 0"
                } else {
                    "the unlabelled images are of the same scanner"
                };
                return Err(ctx.param_error(
                    &["domain_adversarial"],
                    format!(
                        "domain-adversarial training needs at least two domains (scanners), but every training image is from {} and {why}; train on several scanners, or keep unlabelled images of another scanner and set unlabelled_per_batch > 0",
                        domains.first().map(String::as_str).unwrap_or("no scanner"),
                    ),
                ));
            }
            tracing::info!("domain-adversarial training over {} domains: {}", domains.len(), domains.join(", "));
            Some(DomainTrainer::new(p, d, domains, device)?)
        }
    };
    Ok(DgInputs { images, scanners, first_unlabelled, unlabelled_sizes, fourier, stain, trainer })
}

/// File names of the classifier's state in the resume directory.
pub const WEIGHTS_FILE: &str = "domain_classifier.safetensors";
pub const OPTIMIZER_FILE: &str = "domain_optimizer.safetensors";

pub struct DomainTrainer {
    pub params: DomainAdversarialParams,
    /// Domain names (scanners), index = class.
    pub domains: Vec<String>,
    vs: nn::VarStore,
    classifier: DomainClassifier,
    opt: FlatOptimizer,
}

impl DomainTrainer {
    /// A classifier over `domains` (at least two) on the detector's FPN levels.
    pub fn new(
        p: &TrainParams,
        da: &DomainAdversarialParams,
        domains: Vec<String>,
        device: Device,
    ) -> Result<DomainTrainer, StageError> {
        let levels = da.level_indices(p.model.pyramid_levels()).map_err(StageError::msg)?;
        let vs = nn::VarStore::new(device);
        let classifier = DomainClassifier::new(
            &vs.root(),
            p.model.trunk().fpn_channels,
            &levels,
            da.hidden_channels,
            domains.len() as i64,
        );
        let opt = FlatOptimizer::new(&vs, p.optimizer, p.weight_decay, p.momentum);
        Ok(DomainTrainer { params: da.clone(), domains, vs, classifier, opt })
    }

    /// Class index of each patch's domain, as a `[N]` i64 tensor on `device` (one small upload).
    pub fn labels(&self, scanners: &[&str], device: Device) -> Result<Tensor, StageError> {
        let idx: Vec<i64> = scanners
            .iter()
            .map(|s| {
                self.domains
                    .iter()
                    .position(|d| d == s)
                    .map(|i| i as i64)
                    .ok_or_else(|| StageError::msg(format!("scanner {s} is not a training domain")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Tensor::from_slice(&idx).to_device(device))
    }

    /// The classifier's weights and optimiser state, as files of an epoch's checkpoint.
    pub fn to_files(&self) -> Result<Vec<(&'static str, Vec<u8>)>, StageError> {
        let mut tensors: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let weights =
            midog_model::weights::safetensors_bytes(&tensors, Default::default()).map_err(StageError::domain)?;
        let optimizer = self.opt.to_bytes().map_err(StageError::domain)?;
        Ok(vec![(WEIGHTS_FILE, weights), (OPTIMIZER_FILE, optimizer)])
    }

    pub fn load(&mut self, dir: &Path) -> Result<(), StageError> {
        let path = dir.join(WEIGHTS_FILE);
        let (tensors, _) = midog_model::weights::read_safetensors(&path).map_err(StageError::domain)?;
        midog_model::weights::load_state_dict(&self.vs, tensors, &path, &[]).map_err(StageError::domain)?;
        self.opt.load(&dir.join(OPTIMIZER_FILE)).map_err(StageError::msg)
    }
}

/// The domain part of one step: the domain labels of the batch and λ.
pub struct DomainBatch<'a> {
    pub trainer: &'a mut DomainTrainer,
    pub labels: Tensor,
    pub lambda: f64,
}

/// One optimisation step: detection loss of the first `labelled` images, plus (with `domain`)
/// the domain loss of every image. Returns `[total, classification, box, domain, accuracy]`
/// detached on the device (domain and accuracy are 0 without domain training).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    net: &dyn Detector,
    opt: &mut FlatOptimizer,
    vs: &nn::VarStore,
    images: &Tensor,
    targets: &Targets,
    labelled: i64,
    domain: Option<DomainBatch<'_>>,
    precision: Precision,
    scaler: &mut LossScaler,
    lr: f64,
    clip: Option<f64>,
) -> Tensor {
    opt.zero_grad();
    let (losses, domain_part) = match domain {
        None => (net.losses(images, targets, precision, true), None),
        Some(d) => {
            d.trainer.opt.zero_grad();
            let (losses, features) = net.losses_with_features(images, targets, labelled, precision, true);
            let dl = precision.run(|| d.trainer.classifier.loss(&features, &d.labels, d.lambda));
            (losses, Some((dl, d.trainer)))
        }
    };
    let zero = || Tensor::zeros([], (Kind::Float, images.device()));
    let (total, domain_loss, accuracy) = match &domain_part {
        Some((dl, _)) => (&losses.total + &dl.loss, dl.loss.detach(), dl.accuracy.detach()),
        None => (losses.total.shallow_clone(), zero(), zero()),
    };
    let step = |opt: &mut FlatOptimizer, trainer: Option<&mut DomainTrainer>| {
        let _ = opt.step(lr, clip);
        if let Some(t) = trainer {
            let _ = t.opt.step(lr, clip);
        }
    };
    let trainer = domain_part.map(|(_, t)| t);
    if scaler.enabled() {
        scaler.scale_loss(&total).backward();
        let mut vars = vs.trainable_variables();
        if let Some(t) = &trainer {
            vars.extend(t.vs.trainable_variables());
        }
        let found_inf = scaler.unscale_(&vars).map(|f| bool::try_from(&f).unwrap_or(true)).unwrap_or(false);
        if scaler.update(found_inf) {
            step(opt, trainer);
        }
    } else {
        total.backward();
        step(opt, trainer);
    }
    Tensor::stack(
        &[total.detach(), losses.classification.detach(), losses.box_regression.detach(), domain_loss, accuracy],
        0,
    )
}

/// `per_batch` uniformly placed patches of the unlabelled images (`sizes`, loader indices from
/// `first_index`) for each of `batches` batches, from their own stream of (seed, epoch).
pub fn unlabelled_patches(
    sizes: &[(u32, u32)],
    first_index: usize,
    patch: u32,
    per_batch: usize,
    batches: usize,
    seed: u64,
    epoch: u32,
) -> Vec<Vec<PatchSpec>> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(stages::artifact::sample_plan::mix(seed ^ 0x756e_6c61_6265_6c6c, epoch as u64));
    (0..batches)
        .map(|_| {
            (0..per_batch)
                .map(|_| {
                    let i = rng.random_range(0..sizes.len());
                    let (w, h) = sizes[i];
                    let x = rng.random_range(0..=w.saturating_sub(patch));
                    let y = rng.random_range(0..=h.saturating_sub(patch));
                    PatchSpec { image: first_index + i, x: i64::from(x), y: i64::from(y) }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use midog_model::config::{CenterNetConfig, DetectorConfig, DetectorKind, TrunkConfig};
    use midog_model::{FpnLevels, HeadKind, RetinaNetConfig};

    fn params(detector: DetectorKind) -> TrainParams {
        let trunk = TrunkConfig {
            fpn_channels: 32,
            head_channels: 32,
            head_convs: 1,
            head: HeadKind::GroupNorm,
            head_gn_groups: 8,
            ..Default::default()
        };
        let model = match detector {
            DetectorKind::Retinanet => {
                DetectorConfig::RetinaNet(RetinaNetConfig { trunk, fpn_levels: FpnLevels::P3p5, ..Default::default() })
            }
            DetectorKind::Centernet => DetectorConfig::CenterNet(CenterNetConfig { trunk, ..Default::default() }),
        };
        TrainParams { model, ..Default::default() }
    }

    /// The loader boxes of a batch of 2 labelled + 2 unlabelled patches, with or without labels
    /// planted on the unlabelled ones, as the train stage turns them into targets.
    fn targets(planted: bool) -> Targets {
        let mut boxes = vec![vec![[8.0f32, 8.0, 40.0, 40.0]], vec![[20.0, 10.0, 60.0, 50.0]], vec![], vec![]];
        if planted {
            boxes[2] = vec![[4.0, 4.0, 30.0, 30.0], [30.0, 30.0, 60.0, 60.0]];
            boxes[3] = vec![[10.0, 20.0, 50.0, 60.0]];
        }
        crate::image_set::labelled_targets(&boxes, 2, 1, Device::Cpu).unwrap()
    }

    #[test]
    fn labels_planted_on_unlabelled_patches_change_no_detection_loss() {
        for family in [DetectorKind::Retinanet, DetectorKind::Centernet] {
            // Weights and images drawn once and copied into each run: other tests in this binary
            // draw from the same global generator meanwhile, so a second seeded draw may differ.
            tch::manual_seed(5);
            let p = params(family);
            let da = DomainAdversarialParams { levels: vec!["p3".into(), "p5".into()], ..Default::default() };
            let (start_vs, _) = midog_model::build_detector(&p.model, Device::Cpu).unwrap();
            let start_trainer = DomainTrainer::new(&p, &da, vec!["A".into(), "B".into()], Device::Cpu).unwrap();
            let images = Tensor::randn([4, 3, 64, 64], (Kind::Float, Device::Cpu));
            let run = |planted: bool| {
                let (mut vs, net) = midog_model::build_detector(&p.model, Device::Cpu).unwrap();
                vs.copy(&start_vs).unwrap();
                let mut opt = FlatOptimizer::new(&vs, p.optimizer, 0.0, 0.9);
                let mut trainer = DomainTrainer::new(&p, &da, vec!["A".into(), "B".into()], Device::Cpu).unwrap();
                trainer.vs.copy(&start_trainer.vs).unwrap();
                let labels = trainer.labels(&["A", "A", "B", "B"], Device::Cpu).unwrap();
                let t = targets(planted);
                assert_eq!(t.boxes.size()[0], 2, "targets only for the labelled patches");
                let mut scaler = LossScaler::new(Precision::Fp32);
                let mut rows = Vec::new();
                for _ in 0..2 {
                    let domain =
                        Some(DomainBatch { trainer: &mut trainer, labels: labels.shallow_clone(), lambda: 0.7 });
                    let r = train_step(
                        net.as_ref(),
                        &mut opt,
                        &vs,
                        &images,
                        &t,
                        2,
                        domain,
                        Precision::Fp32,
                        &mut scaler,
                        1e-3,
                        None,
                    );
                    rows.push(Vec::<f32>::try_from(r).unwrap());
                }
                rows
            };
            let (clean, planted) = (run(false), run(true));
            assert_eq!(clean, planted, "{family:?}: planted labels changed the losses");
            assert!(clean[0][3] > 0.0, "the domain loss is on");
            assert!(clean[1][0] != clean[0][0], "the step changed the model");
        }
    }

    #[test]
    fn unlabelled_patches_are_seeded_and_inside() {
        let sizes = [(1000, 800), (600, 700)];
        let a = unlabelled_patches(&sizes, 5, 256, 3, 4, 9, 2);
        assert_eq!(a, unlabelled_patches(&sizes, 5, 256, 3, 4, 9, 2));
        assert_ne!(a, unlabelled_patches(&sizes, 5, 256, 3, 4, 9, 3));
        for s in a.iter().flatten() {
            let (w, h) = sizes[s.image - 5];
            assert!(s.x >= 0 && s.x + 256 <= i64::from(w) && s.y >= 0 && s.y + 256 <= i64::from(h));
        }
    }
}
