//! Domain-adversarial training on both detector families: unlabelled images share the trunk's
//! forward pass but never reach the detection loss, and the domain loss trains the classifier
//! while its reversed gradient reaches the trunk.

use midog_model::config::{CenterNetConfig, DetectorConfig, DetectorKind, TrunkConfig};
use midog_model::{DomainClassifier, FpnLevels, HeadKind, Precision, RetinaNetConfig, Targets, build_detector};
use tch::{Device, Kind, Tensor, nn};

fn tiny(detector: DetectorKind) -> DetectorConfig {
    let trunk = TrunkConfig {
        fpn_channels: 32,
        head_channels: 32,
        head_convs: 1,
        head: HeadKind::GroupNorm,
        head_gn_groups: 8,
        ..Default::default()
    };
    match detector {
        DetectorKind::Retinanet => {
            DetectorConfig::RetinaNet(RetinaNetConfig { trunk, fpn_levels: FpnLevels::P3p5, ..Default::default() })
        }
        DetectorKind::Centernet => DetectorConfig::CenterNet(CenterNetConfig { trunk, ..Default::default() }),
    }
}

fn targets(boxes: &[Vec<[f32; 4]>]) -> Targets {
    let labels: Vec<Vec<i64>> = boxes.iter().map(|b| vec![0; b.len()]).collect();
    Targets::from_lists(boxes, &labels, 1, Device::Cpu).unwrap()
}

#[test]
fn unlabelled_images_reach_only_the_domain_loss() {
    for family in [DetectorKind::Retinanet, DetectorKind::Centernet] {
        tch::manual_seed(11);
        let (vs, net) = build_detector(&tiny(family), Device::Cpu).unwrap();
        // Two labelled images, then two unlabelled ones.
        let images = Tensor::randn([4, 3, 64, 64], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let labelled = targets(&[vec![[8.0, 8.0, 40.0, 40.0]], vec![[20.0, 10.0, 60.0, 50.0]]]);
        let (losses, features) = net.losses_with_features(&images, &labelled, 2, Precision::Fp32, true);
        assert_eq!(features.len(), 3, "{family:?}: P3–P5");
        assert!(features.iter().all(|f| f.size()[0] == 4), "features of every image");
        // The detection loss equals that of the labelled images alone …
        let alone = net.losses(&images.narrow(0, 0, 2), &labelled, Precision::Fp32, true);
        let (a, b) = (losses.total.double_value(&[]), alone.total.double_value(&[]));
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{family:?}: {a} vs {b}");
        // … and has no gradient at all with respect to the unlabelled images.
        let g = tch::Tensor::run_backward(&[&losses.total], &[&images], true, false);
        let unlabelled_grad = g[0].narrow(0, 2, 2).abs().max().double_value(&[]);
        let labelled_grad = g[0].narrow(0, 0, 2).abs().max().double_value(&[]);
        assert_eq!(unlabelled_grad, 0.0, "{family:?}");
        assert!(labelled_grad > 0.0);

        // The domain loss reaches every image, reversed: its gradient on the trunk is −λ × that
        // of the plain classifier loss.
        let dvs = nn::VarStore::new(Device::Cpu);
        let clf = DomainClassifier::new(&dvs.root(), 32, &[0, 2], 16, 2);
        let domains = Tensor::from_slice(&[0i64, 0, 1, 1]);
        let (_, f) = net.losses_with_features(&images, &labelled, 2, Precision::Fp32, true);
        let d = clf.loss(&f, &domains, 0.5);
        let g_rev = Tensor::run_backward(&[&d.loss], &[&images], true, false);
        let (_, f) = net.losses_with_features(&images, &labelled, 2, Precision::Fp32, true);
        let d = clf.loss(&f, &domains, -1.0); // λ = −1: the plain, un-reversed gradient
        let g_plain = Tensor::run_backward(&[&d.loss], &[&images], true, false);
        assert!(
            g_plain[0].narrow(0, 2, 2).abs().max().double_value(&[]) > 0.0,
            "unlabelled images feed the domain loss"
        );
        let err = (&g_rev[0] + &g_plain[0] * 0.5).abs().max().double_value(&[]);
        let scale = g_plain[0].abs().max().double_value(&[]);
        assert!(err <= 1e-4 * scale, "{family:?}: reversed gradient off by {err} (scale {scale})");
        drop(vs);
    }
}
