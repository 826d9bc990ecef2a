#!/usr/bin/env python3
"""Training throughput of torchvision's RetinaNet, the yardstick for `pipeline bench train`.

Same architecture as `pipeline bench train` with the default model config: ResNet-18
with frozen batch norm (3 trainable stages), FPN P3-P7 (P6 from P5) with 256 channels, v1 head
(`--head group_norm` for v2, `--levels p3p5` for the light layout), one class, Adam lr 1e-4.
Synthetic uint8 NHWC batches on the device, converted to 0-1 float CHW images as a user would, and
the whole `model(images, targets)` training call as users run it (GeneralizedRCNNTransform with
min_size = max_size = size, so the images keep their size), backward and optimiser step.
Targets: 50 px boxes, image 0 without boxes, image i with 1 + i % 4 boxes.

Usage: bench_torchvision.py [--batch 4] [--size 512] [--steps 10] [--warmup 2]
                            [--device cpu|cuda] [--bf16] [--threads N] [--head plain|group_norm]
                            [--levels p3p7|p3p5]
Prints one line: `torchvision img/s: X` (plus the settings).
"""

import argparse
import time
from functools import partial

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelP6P7


class NoExtraBlocks(ExtraFPNBlock):
    def forward(self, results, x, names):
        return results, names


def build(levels, head_kind, size):
    extra = LastLevelP6P7(256, 256) if levels == "p3p7" else NoExtraBlocks()
    backbone = resnet_fpn_backbone(
        backbone_name="resnet18",
        weights=None,
        norm_layer=misc_nn_ops.FrozenBatchNorm2d,
        trainable_layers=3,
        returned_layers=[2, 3, 4],
        extra_blocks=extra,
    )
    n = 5 if levels == "p3p7" else 3
    sizes = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in [32, 64, 128, 256, 512][:n])
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * n)
    norm = partial(nn.GroupNorm, 32) if head_kind == "group_norm" else None
    head = RetinaNetHead(256, anchors.num_anchors_per_location()[0], 1, norm_layer=norm)
    if head_kind == "group_norm":
        head.regression_head._loss_type = "giou"
    return RetinaNet(backbone, 1, min_size=size, max_size=size, anchor_generator=anchors, head=head)


def synthetic_targets(batch, size, device, gen):
    targets = []
    for i in range(batch):
        n = 0 if (i == 0 and batch > 1) else 1 + i % 4
        xy = torch.randint(0, size - 50, (n, 2), generator=gen).float()
        boxes = torch.cat([xy, xy + 50.0], dim=1)
        targets.append({"boxes": boxes.to(device), "labels": torch.zeros(n, dtype=torch.int64, device=device)})
    return targets


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="torch.autocast(dtype=torch.bfloat16)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--head", choices=["plain", "group_norm"], default="plain")
    ap.add_argument("--levels", choices=["p3p7", "p3p5"], default="p3p7")
    ap.add_argument("--loss-only", action="store_true", help="time compute_loss + backward on random head outputs")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="then run N more steps under torch.profiler: top kernels and the share of wall time the GPU was busy")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(a.device)
    model = build(a.levels, a.head, a.size).to(device).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    images_u8 = torch.randint(0, 256, (a.batch, a.size, a.size, 3), dtype=torch.uint8, generator=gen).to(device)
    targets = synthetic_targets(a.batch, a.size, device, gen)
    if a.loss_only:
        return bench_loss(model, a, targets, device)

    def step():
        images = [x.permute(2, 0, 1).float() / 255.0 for x in images_u8]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16):
            losses = model(images, targets)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    for _ in range(a.warmup):
        step().item()
    start = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    loss.item()  # waits for the device
    secs = time.perf_counter() - start
    ips = a.batch * a.steps / secs
    print(
        f"torchvision img/s: {ips:.3f} (batch {a.batch}, size {a.size}, steps {a.steps}, device {a.device}, "
        f"{'bf16 autocast' if a.bf16 else 'fp32'}, threads {torch.get_num_threads()}, {a.levels}, {a.head} head)"
    )
    if a.profile > 0:
        profile(step, a.profile, device)


def profile(step, n, device):
    """Where torchvision's step spends its time: the GPU kernels' total time against the wall time."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        start = time.perf_counter()
        for _ in range(n):
            loss = step()
        loss.item()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=15))
    if device.type == "cuda":
        busy = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA) / 1e6
        launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
        print(f"torchvision profile: {n} steps in {wall:.3f} s, GPU kernels busy {busy:.3f} s "
              f"({100 * busy / wall:.0f} % of the wall time), {launches / n:.0f} kernel launches per step")


def bench_loss(model, a, targets, device):
    """compute_loss (matching + focal + box loss, image by image) and its backward alone."""
    from torchvision.models.detection.image_list import ImageList

    with torch.no_grad():
        images = torch.zeros((a.batch, 3, a.size, a.size), device=device)
        feats = list(model.backbone(images[:1]).values())
    anchors = model.anchor_generator(ImageList(images, [(a.size, a.size)] * a.batch), feats)
    n = anchors[0].shape[0]
    cls = (torch.randn((a.batch, n, 1), device=device) - 4.0).requires_grad_()
    reg = (torch.randn((a.batch, n, 4), device=device) * 0.1).requires_grad_()

    def run():
        losses = model.compute_loss(targets, {"cls_logits": cls, "bbox_regression": reg}, anchors)
        total = sum(losses.values())
        total.backward()
        return total

    run().item()
    start = time.perf_counter()
    for _ in range(a.steps):
        total = run()
    total.item()
    ms = (time.perf_counter() - start) * 1e3 / a.steps
    print(f"torchvision loss+backward: {ms:.2f} ms/iter (batch {a.batch}, size {a.size}, {n} anchors, {a.device})")


if __name__ == "__main__":
    main()
