#!/usr/bin/env python3
"""Whole-image inference with torchvision over OpenSlide tiles: the yardstick for `pipeline bench infer`.

What a Python user of torchvision writes to run a RetinaNet over a whole slide: OpenSlide reads
512 px tiles every 460 px (10 % overlap; the last row and column moved back to end exactly at the
border, as `stages::tile_grid::TileGrid` does), a `torch.utils.data.DataLoader` with N worker
processes decodes them, and torchvision's RetinaNet runs batch by batch (fp32, or bf16 under
`torch.autocast`); each batch's detections come back to the host.

The model is the architecture of `pipeline bench infer`'s default (midog-model's default
`RetinaNetConfig`): ResNet-18 with FrozenBatchNorm2d, FPN P3–P7 (P6 from P5, 256 channels), v1
heads (4 conv + ReLU), 9 anchors, one class, score > 0.05, top 1000 per level, NMS 0.5, 300 per
tile; random weights from `torch.manual_seed(0)` with torchvision's own initialisation (both sides
start with the class prior 0.01, so post-processing sees few candidates on both). The transform is
told `min_size = max_size = 512`, so tiles keep their size (torchvision still runs its resize, an
interpolation at scale 1, and its normalisation, as its users get them).

Timing per image, like `pipeline bench infer`: from opening the slide and starting the DataLoader
(its workers start per image, as in a per-image loop) to the last batch's detections on the host.
Model construction is excluded; one warm-up batch runs before the first timed image (ours runs a
whole warm-up image). Prints the median of `--repeats` images as text, then one JSON line.

    $PIPELINE_PYTHON stages/torch/bench/torchvision_infer.py --image 001.tiff --workers 2 --device cpu
    pipeline bench infer --image 001.tiff --device cpu        # ours, same image

Options: --device cpu|cuda[:N], --precision fp32|bf16, --batch 8, --workers 2, --repeats 3,
--tile 512, --overlap 0.1 (fraction < 1 or pixels), --threads N (torch intra-op threads, 0: default),
--reader auto|openslide|pil (pil: where openslide-python is missing; decodes the whole image first),
--channels-last (the weights; GeneralizedRCNNTransform re-batches the inputs contiguously).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import numpy as np
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelP6P7


def overlap_px(tile: int, overlap: float) -> int:
    """stages::tile_grid::overlap_px: a fraction of the tile (< 1) or pixels (≥ 1)."""
    px = math.ceil(tile * overlap) if overlap < 1 else round(overlap)
    return min(max(int(px), 0), max(tile - 1, 0))


def axis(size: int, tile: int, stride: int) -> list[int]:
    """stages::tile_grid::axis: every `stride` px, the last tile moved back to end at the border."""
    if size <= tile:
        return [0]
    last = size - tile
    return list(range(0, last, stride)) + [last]


def tile_origins(width: int, height: int, tile: int, overlap: float) -> list[tuple[int, int]]:
    stride = max(tile - overlap_px(tile, overlap), 1)
    return [(x, y) for y in axis(height, tile, stride) for x in axis(width, tile, stride)]


class Tiles(Dataset):
    """Tiles of one slide. `openslide`: each worker process opens its own OpenSlide handle and reads
    its tiles. `pil` (the fallback where openslide-python is not installed): the main process decodes
    the whole image with Pillow (libtiff + libjpeg-turbo, the same pixels as OpenSlide) and the
    forked workers crop it."""

    def __init__(self, path: str, origins: list[tuple[int, int]], tile: int, reader: str):
        self.path, self.origins, self.tile, self.reader = path, origins, tile, reader
        self.slide = None
        self.whole = None
        if reader == "pil":
            from PIL import Image

            Image.MAX_IMAGE_PIXELS = None
            with Image.open(path) as im:
                self.whole = np.asarray(im.convert("RGB"))

    def __len__(self) -> int:
        return len(self.origins)

    def __getitem__(self, i: int) -> torch.Tensor:
        x, y = self.origins[i]
        if self.whole is not None:
            rgb = self.whole[y : y + self.tile, x : x + self.tile].copy()
        else:
            if self.slide is None:
                import openslide

                self.slide = openslide.OpenSlide(self.path)
            rgba = self.slide.read_region((x, y), 0, (self.tile, self.tile))
            rgb = np.array(rgba.convert("RGB"))  # a writable copy, as torch wants
        return torch.from_numpy(rgb).permute(2, 0, 1)  # uint8 CHW: 4× less to copy than float


def image_size(path: str, reader: str) -> tuple[int, int]:
    if reader == "openslide":
        import openslide

        with openslide.OpenSlide(path) as slide:
            return slide.dimensions
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    with Image.open(path) as im:
        return im.size


def build(tile: int) -> RetinaNet:
    backbone = resnet_fpn_backbone(
        backbone_name="resnet18",
        weights=None,
        norm_layer=misc_nn_ops.FrozenBatchNorm2d,
        trainable_layers=3,
        returned_layers=[2, 3, 4],
        extra_blocks=LastLevelP6P7(256, 256),
    )
    return RetinaNet(backbone, num_classes=1, min_size=tile, max_size=tile).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def run_image(model, path, a, device, origins) -> tuple[float, int]:
    """Seconds for one whole image and the number of candidate boxes."""
    sync(device)
    start = time.perf_counter()
    loader = DataLoader(
        Tiles(path, origins, a.tile, a.reader),
        batch_size=a.batch,
        num_workers=a.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if a.workers > 0 else None,
    )
    found = 0
    for batch_index, batch in enumerate(loader):
        images = batch.to(device, non_blocking=True).float().div_(255.0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            dets = model(list(images))
        first = batch_index * a.batch
        for i, d in enumerate(dets):
            ox, oy = origins[first + i]
            boxes = d["boxes"].float().cpu()  # waits for the device
            boxes[:, 0::2] += ox
            boxes[:, 1::2] += oy
            found += int((d["scores"].cpu() > 0.05).sum())
    sync(device)
    return time.perf_counter() - start, found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", required=True, help="a TIFF that OpenSlide opens")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (0: in the main process)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--reader", choices=["auto", "openslide", "pil"], default="auto",
                    help="tile reader (auto: openslide if installed, else pil)")
    ap.add_argument("--channels-last", action="store_true", help="model weights in channels-last memory format")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    torch.manual_seed(0)
    model = build(a.tile).to(device)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if a.reader == "auto":
        try:
            import openslide  # noqa: F401

            a.reader = "openslide"
        except ImportError:
            a.reader = "pil"
    width, height = image_size(a.image, a.reader)
    origins = tile_origins(width, height, a.tile, a.overlap)

    # Warm-up: one batch (cuDNN autotuning, allocator, lazy initialisation).
    run_image(model, a.image, a, device, origins[: a.batch])
    times, found = [], 0
    for _ in range(a.repeats):
        secs, found = run_image(model, a.image, a, device, origins)
        times.append(secs)
    median = statistics.median(times)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(
        f"torchvision whole-image inference: {width} × {height} px, {len(origins)} tiles of {a.tile} px, "
        f"{a.precision} on {a.device}{f' ({gpu})' if gpu else ''}, {a.reader}, {a.workers} DataLoader workers, batch {a.batch}: "
        f"{median:.2f} s per image (median of {a.repeats}: {', '.join(f'{t:.2f}' for t in times)})"
    )
    print(json.dumps({
        "what": "infer", "impl": "torchvision", "torch": torch.__version__, "torchvision": torchvision.__version__,
        "width": width, "height": height, "tiles": len(origins), "tile_size": a.tile, "overlap": a.overlap,
        "batch": a.batch, "workers": a.workers, "reader": a.reader, "precision": a.precision, "device": a.device, "gpu_name": gpu,
        "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "candidates": found,
        "seconds_per_image": median, "seconds": times, "repeats": a.repeats,
    }))


if __name__ == "__main__":
    main()
