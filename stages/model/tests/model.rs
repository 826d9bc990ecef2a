//! End-to-end behaviour on tiny inputs: checkpoints, training steps (fp32, bf16), empty targets,
//! detection, the benchmark entry point.

use std::collections::HashMap;

use midog_model::bench::synthetic_targets;
use midog_model::precision::{Precision, PrecisionExt};
use midog_model::weights;
use midog_model::{FpnLevels, HeadKind, RetinaNet, RetinaNetConfig, Targets, TrunkConfig};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor, nn};

/// Small but complete: ResNet-18, P3–P5, 64-channel GroupNorm head.
fn light_trunk() -> TrunkConfig {
    TrunkConfig { fpn_channels: 64, head_channels: 64, head: HeadKind::GroupNorm, ..Default::default() }
}

fn light() -> RetinaNetConfig {
    RetinaNetConfig { trunk: light_trunk(), fpn_levels: FpnLevels::P3p5, ..Default::default() }
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("midog-model-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn checkpoint_is_self_describing() {
    tch::manual_seed(1);
    let cfg = RetinaNetConfig { trunk: TrunkConfig { num_classes: 2, score_thresh: 0.2, ..light_trunk() }, ..light() };
    let vs = nn::VarStore::new(Device::Cpu);
    let net = RetinaNet::new(&vs.root(), &cfg).unwrap();
    let path = tmp("ckpt.safetensors");
    net.save_checkpoint(&vs, &path).unwrap();
    let (vs2, net2) = midog_model::load_checkpoint(&path, Device::Cpu).unwrap();
    assert_eq!(net2.config(), &cfg);
    assert_eq!(vs2.variables().len(), vs.variables().len());
    let x = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
    let (a, b) = tch::no_grad(|| (net.forward_t(&x, false), net2.forward_t(&x, false)));
    assert!(a.cls_logits.equal(&b.cls_logits) && a.bbox_regression.equal(&b.bbox_regression));

    // a plain state dict is not a checkpoint
    let plain = tmp("plain.safetensors");
    let tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    weights::write_safetensors(&plain, &tensors, HashMap::new()).unwrap();
    let e = midog_model::load_checkpoint(&plain, Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("plain.safetensors") && e.contains("midog_model.config"), "{e}");
    let missing = midog_model::load_checkpoint(&tmp("nope.safetensors"), Device::Cpu).unwrap_err().to_string();
    assert!(missing.contains("nope.safetensors"), "{missing}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// One optimisation step (fp32 or bf16: no loss scaling); the total loss.
fn step(
    net: &RetinaNet,
    opt: &mut nn::Optimizer,
    images: &Tensor,
    anchors: &Tensor,
    targets: &Targets,
    p: Precision,
) -> f64 {
    let out = p.run(|| net.forward_t(&p.prepare_input(images), true));
    let losses = net.loss(&out.to_kind(Kind::Float), anchors, targets);
    opt.backward_step(&losses.total);
    f64::try_from(&losses.total).unwrap()
}

#[test]
fn training_steps_fp32_and_bf16() {
    tch::manual_seed(2);
    let cfg = light(); // trainable_backbone_layers = 3: conv1 and layer1 frozen
    let vs = nn::VarStore::new(Device::Cpu);
    let net = RetinaNet::new(&vs.root(), &cfg).unwrap();
    let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
    let vars = vs.variables();
    let frozen = vars["backbone.body.conv1.weight"].copy();
    let bn = vars["backbone.body.layer2.0.bn1.running_mean"].copy();
    let trained = vars["head.classification_head.cls_logits.weight"].copy();
    let trained_body = vars["backbone.body.layer3.0.conv1.weight"].copy();

    let images_u8 = Tensor::randint(256, [2, 128, 128, 3], (Kind::Uint8, Device::Cpu));
    let targets = synthetic_targets(2, 128, cfg.trunk.num_classes, Device::Cpu).unwrap(); // image 0 has no boxes
    assert!(!bool::try_from(targets.valid.get(0).any()).unwrap());
    let anchors = net.anchors_for(128, 128, Device::Cpu);
    let images = net.normalize(&images_u8, false);
    for _ in 0..3 {
        assert!(step(&net, &mut opt, &images, &anchors, &targets, Precision::Fp32).is_finite());
    }
    let vars = vs.variables();
    assert!(vars["backbone.body.conv1.weight"].equal(&frozen), "frozen conv1 must not change");
    assert!(vars["backbone.body.layer2.0.bn1.running_mean"].equal(&bn), "frozen BN must not change");
    assert!(!vars["head.classification_head.cls_logits.weight"].equal(&trained));
    assert!(!vars["backbone.body.layer3.0.conv1.weight"].equal(&trained_body));

    // bf16: computes in bf16, master weights stay f32, channels-last input
    let images = net.normalize(&images_u8, true);
    let out = tch::no_grad(|| net.forward_t(&Precision::Bf16.prepare_input(&images), true));
    assert_eq!(out.cls_logits.kind(), Kind::BFloat16);
    assert!(step(&net, &mut opt, &images, &anchors, &targets, Precision::Bf16).is_finite());
    assert_eq!(vs.variables()["head.classification_head.cls_logits.weight"].kind(), Kind::Float);
}

#[test]
fn batch_without_any_box() {
    let cfg = light();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = RetinaNet::new(&vs.root(), &cfg).unwrap();
    let targets = Targets::from_lists(&[vec![], vec![]], &[vec![], vec![]], 1, Device::Cpu).unwrap();
    let x = Tensor::randn([2, 3, 64, 96], (Kind::Float, Device::Cpu));
    let anchors = net.anchors_for(64, 96, Device::Cpu);
    let out = net.forward_t(&x, true);
    let l = net.loss(&out, &anchors, &targets);
    assert_eq!(f64::try_from(&l.box_regression).unwrap(), 0.0);
    assert!(f64::try_from(&l.classification).unwrap() > 0.0);
    l.total.backward();
    let g = vs.variables()["head.classification_head.cls_logits.weight"].grad();
    assert!(bool::try_from(g.isfinite().all()).unwrap());
}

#[test]
fn detect_shapes() {
    let cfg =
        RetinaNetConfig { trunk: TrunkConfig { score_thresh: 0.0, detections_per_img: 7, ..light_trunk() }, ..light() };
    let vs = nn::VarStore::new(Device::Cpu);
    let net = RetinaNet::new(&vs.root(), &cfg).unwrap();
    let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
    let anchors = net.anchors_for(64, 64, Device::Cpu);
    let out = tch::no_grad(|| net.forward_t(&x, false));
    let d = net.detect(&out, &anchors, &[(64, 64), (40, 50)]);
    assert_eq!(d.len(), 2);
    for det in &d {
        assert_eq!(det.boxes.size(), vec![7, 4]);
        assert_eq!(det.labels.kind(), Kind::Int64);
        let s: Vec<f32> = Vec::try_from(&det.scores).unwrap();
        assert!(s.windows(2).all(|w| w[0] >= w[1]), "sorted by score");
    }
    // clipped to each image's own size
    let max_x = f64::try_from(d[1].boxes.select(1, 2).max()).unwrap();
    assert!(max_x <= 50.0);
}

#[test]
fn model_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<RetinaNet>();
    assert_send::<midog_model::Detections>();
}
