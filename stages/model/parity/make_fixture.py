#!/usr/bin/env python3
"""Writes the torchvision parity fixture for the `midog-model` crate.

Usage: make_fixture.py OUT_DIR

Needs torch 2.11.0 and torchvision 0.26.0 (CPU is enough); runs in a few seconds. The Rust tests
(`stages/model/tests/parity.rs`) run this script through the pipeline's Python environment and cache
the output under the cargo target directory, keyed by a hash of this file.

For each variant below it builds torchvision's own RetinaNet with a ResNet-18 FPN backbone
(`resnet_fpn_backbone` with `FrozenBatchNorm2d`, returned layers 2, 3, 4), fills it with random but
seeded weights (BN running statistics, affine parameters and all biases perturbed so that nothing is
trivial), and writes two files:

  {variant}.weights.safetensors   the model's `state_dict()`, names exactly as torchvision writes them
  {variant}.expected.safetensors  inputs, targets and expected outputs (metadata: the variant's settings)

plus `resnet18_imagenet.safetensors`: the v1 backbone body as an ImageNet classification state dict
(`conv1.weight`, `bn1.running_mean`, ..., `fc.weight`, with `num_batches_tracked` as a plain
`BatchNorm2d` state dict has).

GeneralizedRCNNTransform is bypassed: the inputs are already normalised float images of one size, and
the script calls the model's pieces directly, exactly as `RetinaNet.forward` does after the transform:
`model.backbone` -> `model.head` -> `model.anchor_generator` -> `model.compute_loss` (training) and
split per level -> `model.postprocess_detections` (inference). No resize happens anywhere, so the
expected detections are in input pixel coordinates.

Expected tensors (N = 2 images of 3 x 128 x 160; image 0 has boxes, image 1 has none):
  images [N,3,H,W] f32, target_boxes [N,M,4] f32 (padded), target_labels [N,M] i64, target_valid [N,M] u8,
  anchors [A,4], cls_logits [N,A,C], bbox_regression [N,A,4], matched_idxs [N,A] i64,
  loss_classification [], loss_bbox_l1 [], loss_bbox_smooth_l1 [], loss_bbox_giou [],
  det{i}_boxes [K,4], det{i}_scores [K], det{i}_labels [K] i64,
  grad.{param name} for a few parameters: gradients of classification + the variant's box loss.
"""

import json
import math
import os
import sys
from collections import OrderedDict
from functools import partial

import torch
import torchvision
from safetensors.torch import save_file
from torch import nn
from torchvision.models.detection import retinanet as tv_retinanet
from torchvision.models.detection._utils import _box_loss as tv_box_loss
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelP6P7

H, W = 128, 160
SMOOTH_L1_BETA = 0.5

# name: (fpn layout, fpn channels, head norm, num_classes, box loss for the gradient check)
VARIANTS = {
    # torchvision v1: P6 from P5, plain head with conv bias, L1 box loss
    "v1": dict(levels="p3p7", channels=256, head="plain", num_classes=1, p6_from="p5", box_loss="l1"),
    # torchvision v2 style: P6 from C5, GroupNorm(32) head without conv bias, GIoU box loss, 3 classes
    "v2": dict(levels="p3p7", channels=256, head="group_norm", num_classes=3, p6_from="c5", box_loss="giou"),
    # the light layout for 50 px objects: P3-P5 only, 128 channels, smooth-L1
    "p3p5": dict(levels="p3p5", channels=128, head="plain", num_classes=1, p6_from="p5", box_loss="smooth_l1"),
}


class NoExtraBlocks(ExtraFPNBlock):
    """P3-P5 only (torchvision's default would add a max-pool level)."""

    def forward(self, results, x, names):
        return results, names


def anchor_generator(levels):
    n = 5 if levels == "p3p7" else 3
    sizes = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in [32, 64, 128, 256, 512][:n])
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * n)


def build(v):
    if v["levels"] == "p3p7":
        in_p6 = v["channels"] if v["p6_from"] == "p5" else 512  # resnet18 C5 has 512 channels
        extra = LastLevelP6P7(in_p6, v["channels"])
    else:
        extra = NoExtraBlocks()
    if v["channels"] == 256:
        backbone = resnet_fpn_backbone(
            backbone_name="resnet18",
            weights=None,
            norm_layer=misc_nn_ops.FrozenBatchNorm2d,
            trainable_layers=5,
            returned_layers=[2, 3, 4],
            extra_blocks=extra,
        )
    else:
        body = torchvision.models.resnet18(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d)
        backbone = BackboneWithFPN(
            body, {"layer2": "0", "layer3": "1", "layer4": "2"}, [128, 256, 512], v["channels"], extra_blocks=extra
        )
    anchors = anchor_generator(v["levels"])
    norm = partial(nn.GroupNorm, 32) if v["head"] == "group_norm" else None
    head = RetinaNetHead(
        backbone.out_channels, anchors.num_anchors_per_location()[0], v["num_classes"], norm_layer=norm
    )
    return RetinaNet(backbone, v["num_classes"], anchor_generator=anchors, head=head)


@torch.no_grad()
def randomise(model, gen):
    """Seeded weights with non-trivial statistics."""

    def randn(t, std):
        return torch.randn(t.shape, generator=gen) * std

    for name, module in model.named_modules():
        if isinstance(module, misc_nn_ops.FrozenBatchNorm2d):
            c = module.weight.shape[0]
            module.weight.copy_(0.5 + torch.rand(c, generator=gen))
            module.bias.copy_(randn(module.bias, 0.1))
            module.running_mean.copy_(randn(module.running_mean, 0.1))
            module.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
        elif isinstance(module, nn.GroupNorm):
            module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=gen))
            module.bias.copy_(randn(module.bias, 0.1))
        elif isinstance(module, nn.Conv2d):
            fan_in = module.weight[0].numel()
            gain = 1.0 if ("fpn" in name or "head" in name) else math.sqrt(2.0)
            module.weight.copy_(randn(module.weight, gain / math.sqrt(fan_in)))
            if module.bias is not None:
                module.bias.copy_(randn(module.bias, 0.05))


def features_of(model, images):
    return list(model.backbone(images).values())


@torch.no_grad()
def calibrate_head(model, images, gen):
    """Spread the logits around the score threshold and give the box deltas a moderate size."""
    feats = features_of(model, images)
    out = model.head(feats)
    cls = model.head.classification_head.cls_logits
    reg = model.head.regression_head.bbox_reg
    s, m = out["cls_logits"].std().item(), out["cls_logits"].mean().item()
    # logits ~ N(-3, 1.5): about half of them above the 0.05 score threshold (logit -2.94)
    cls.weight.mul_(1.5 / s)
    cls.bias.copy_((cls.bias - m) * (1.5 / s) - 3.0)
    r = out["bbox_regression"].std().item()
    reg.weight.mul_(0.3 / r)
    reg.bias.mul_(0.3 / r)
    # one anchor type with a huge dw/dh: exercises the exp clamp at log(1000/16)
    reg.bias[2] += 6.0
    reg.bias[3] += 5.0


def make_targets(num_classes):
    boxes0 = torch.tensor(
        [
            [20.0, 30.0, 70.0, 80.0],  # a 50 px mitosis box
            [90.5, 10.25, 140.5, 60.25],  # another, off-grid
            [60.0, 90.0, 72.0, 101.0],  # small: only low-quality matches
            [5.0, 2.0, 125.0, 120.0],  # large
        ]
    )
    labels0 = torch.tensor([0, num_classes - 1, 0, min(1, num_classes - 1)], dtype=torch.int64)
    return [
        {"boxes": boxes0, "labels": labels0},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)},
    ]


def pad_targets(targets):
    m = max(1, max(len(t["boxes"]) for t in targets))
    n = len(targets)
    boxes = torch.zeros((n, m, 4))
    labels = torch.zeros((n, m), dtype=torch.int64)
    valid = torch.zeros((n, m), dtype=torch.uint8)
    for i, t in enumerate(targets):
        k = len(t["boxes"])
        boxes[i, :k] = t["boxes"]
        labels[i, :k] = t["labels"]
        valid[i, :k] = 1
    return boxes, labels, valid


def matched_idxs(model, targets, anchors):
    out = []
    for a, t in zip(anchors, targets):
        if t["boxes"].numel() == 0:
            out.append(torch.full((a.size(0),), -1, dtype=torch.int64))
        else:
            out.append(model.proposal_matcher(torchvision.ops.box_iou(t["boxes"], a)))
    return torch.stack(out)


def bbox_loss(model, targets, head_outputs, anchors, kind):
    """The head's own compute_loss with its loss type switched (smooth-L1 with our beta)."""
    reg = model.head.regression_head
    saved_type, saved_fn = reg._loss_type, tv_retinanet._box_loss
    try:
        reg._loss_type = kind
        if kind == "smooth_l1":
            tv_retinanet._box_loss = lambda *a: tv_box_loss(*a, cnf={"beta": SMOOTH_L1_BETA})
        m = [mi for mi in matched_idxs(model, targets, anchors)]
        return reg.compute_loss(targets, head_outputs, anchors, m)
    finally:
        reg._loss_type, tv_retinanet._box_loss = saved_type, saved_fn


def run_variant(name, v, out_dir, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build(v)
    randomise(model, gen)
    images = torch.randn((2, 3, H, W), generator=gen)
    calibrate_head(model, images, gen)
    model.eval()
    targets = make_targets(v["num_classes"])

    # forward exactly as RetinaNet.forward after the transform
    feats = features_of(model, images)
    head_outputs = model.head(feats)
    image_list = ImageList(images, [(H, W)] * images.shape[0])
    anchors = model.anchor_generator(image_list, feats)

    losses = model.compute_loss(targets, head_outputs, anchors)  # default box loss: l1
    expected = {
        "images": images,
        "anchors": anchors[0],
        "cls_logits": head_outputs["cls_logits"],
        "bbox_regression": head_outputs["bbox_regression"],
        "matched_idxs": matched_idxs(model, targets, anchors),
        "loss_classification": losses["classification"],
        "loss_bbox_l1": losses["bbox_regression"],
        "loss_bbox_smooth_l1": bbox_loss(model, targets, head_outputs, anchors, "smooth_l1"),
        "loss_bbox_giou": bbox_loss(model, targets, head_outputs, anchors, "giou"),
    }
    boxes, labels, valid = pad_targets(targets)
    expected.update(target_boxes=boxes, target_labels=labels, target_valid=valid)

    # gradients of classification + this variant's box loss
    model.zero_grad()
    total = model.head.classification_head.compute_loss(
        targets, head_outputs, list(matched_idxs(model, targets, anchors))
    ) + bbox_loss(model, targets, head_outputs, anchors, v["box_loss"])
    total.backward()
    expected["loss_total"] = total.detach()
    grad_names = [
        "head.classification_head.cls_logits.weight",
        "head.regression_head.bbox_reg.weight",
        "head.regression_head.conv.0.0.weight",
        "backbone.fpn.layer_blocks.0.0.weight",
        "backbone.body.layer4.1.conv2.weight",
        "backbone.body.conv1.weight",
    ]
    params = dict(model.named_parameters())
    for g in grad_names:
        expected["grad." + g] = params[g].grad.clone()

    # inference: split per level and post-process, exactly as RetinaNet.forward in eval mode
    with torch.no_grad():
        num_per_level = [x.size(2) * x.size(3) for x in feats]
        a_per_loc = head_outputs["cls_logits"].size(1) // sum(num_per_level)
        num_per_level = [hw * a_per_loc for hw in num_per_level]
        split_outputs = {k: list(t.split(num_per_level, dim=1)) for k, t in head_outputs.items()}
        split_anchors = [list(a.split(num_per_level)) for a in anchors]
        dets = model.postprocess_detections(split_outputs, split_anchors, image_list.image_sizes)
    for i, d in enumerate(dets):
        expected[f"det{i}_boxes"] = d["boxes"]
        expected[f"det{i}_scores"] = d["scores"]
        expected[f"det{i}_labels"] = d["labels"]

    meta = {
        "variant": name,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "settings": json.dumps(v),
        "smooth_l1_beta": str(SMOOTH_L1_BETA),
        "num_detections": json.dumps([len(d["scores"]) for d in dets]),
    }
    expected = {k: t.detach().contiguous() for k, t in expected.items()}
    save_file(expected, os.path.join(out_dir, f"{name}.expected.safetensors"), metadata=meta)
    state = OrderedDict((k, t.detach().contiguous()) for k, t in model.state_dict().items())
    save_file(state, os.path.join(out_dir, f"{name}.weights.safetensors"), metadata={"variant": name})
    return model, [len(d["scores"]) for d in dets], losses


def write_imagenet_resnet18(model, out_dir):
    """The v1 body as a torchvision ImageNet classification state dict."""
    gen = torch.Generator().manual_seed(99)
    state = OrderedDict()
    for k, t in model.state_dict().items():
        if k.startswith("backbone.body."):
            state[k[len("backbone.body.") :]] = t.detach().clone()
            if k.endswith(".running_var"):
                state[k[len("backbone.body.") : -len("running_var")] + "num_batches_tracked"] = torch.tensor(7)
    state["fc.weight"] = torch.randn((1000, 512), generator=gen) * 0.01
    state["fc.bias"] = torch.zeros(1000)
    save_file(state, os.path.join(out_dir, "resnet18_imagenet.safetensors"))


def main():
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    for seed, (name, v) in enumerate(VARIANTS.items()):
        model, ndet, losses = run_variant(name, v, out_dir, seed=seed + 1)
        if name == "v1":
            write_imagenet_resnet18(model, out_dir)
        print(
            f"{name}: detections {ndet}, classification {losses['classification'].item():.6f}, "
            f"bbox l1 {losses['bbox_regression'].item():.6f}"
        )


if __name__ == "__main__":
    main()
