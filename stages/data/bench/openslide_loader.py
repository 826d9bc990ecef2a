"""Baseline for `pipeline bench loader`: what a Python training pipeline does today.

openslide-python reads 512 px patches at random positions of the same files, numpy (and PIL for
the bilinear resize) applies the same augmentations as midog-data's loader (flips, 90° rotations,
HED stain jitter with skimage's Ruifrok–Johnston matrix in optical density, brightness,
contrast around the patch mean, scale jitter), and N worker processes (as torch DataLoader
workers) return batches to the parent. Prints patches/s for each worker count.

    /root/.cache/midog-pipeline/torch-2.11.0/bin/python stages/data/bench/openslide_loader.py \\
        --workers 1 2 --batches 50 FILE.tiff...

Compare with (same files, same patch count):
    cargo run --release -p midog-data --example bench_loader -- --threads 1,2 --batches 50 FILE.tiff...
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time

import numpy as np
import openslide
from PIL import Image

RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float32)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED.astype(np.float64)).astype(np.float32)

_slides: list[openslide.OpenSlide] = []
_args: argparse.Namespace | None = None


def _init(paths: list[str], args: argparse.Namespace) -> None:
    global _slides, _args
    _slides = [openslide.OpenSlide(p) for p in paths]
    _args = args


def augment_params(rng: np.random.Generator, a: argparse.Namespace) -> dict:
    """Same draws as midog_data::loader::PatchAugment::sample (distributions, not bit-exact)."""
    p = {"scale": rng.uniform(1 - a.scale_jitter, 1 + a.scale_jitter) if a.scale_jitter > 0 else 1.0}
    p["flip_h"] = a.flips and rng.random() < 0.5
    p["flip_v"] = a.flips and rng.random() < 0.5
    p["rot90"] = int(rng.integers(0, 4)) if a.rot90 else 0
    s = a.stain_jitter
    p["stain"] = (rng.uniform(1 - s, 1 + s, 3).astype(np.float32), rng.uniform(-s, s, 3).astype(np.float32)) if s > 0 else None
    p["brightness"] = rng.uniform(1 - a.brightness, 1 + a.brightness) if a.brightness > 0 else 1.0
    p["contrast"] = rng.uniform(1 - a.contrast, 1 + a.contrast) if a.contrast > 0 else 1.0
    return p


def hed_jitter(rgb: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    od = -np.log(np.maximum(rgb.astype(np.float32) / 255.0, 1e-6))
    hed = np.maximum(od @ HED_FROM_RGB, 0.0) * alpha + beta
    out = np.exp(-(hed @ RGB_FROM_HED))
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def brightness_contrast(rgb: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    if brightness == 1.0 and contrast == 1.0:
        return rgb
    x = rgb.astype(np.float32)
    mean = x.mean()
    x = ((x - mean) * contrast + mean) * brightness
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def read_patch(slide: openslide.OpenSlide, x: int, y: int, size: int, p: dict) -> np.ndarray:
    src = max(1, round(size / p["scale"]))
    off = (size - src) // 2
    region = slide.read_region((x + off, y + off), 0, (src, src))
    if src != size:
        region = region.resize((size, size), Image.BILINEAR)
    rgb = np.asarray(region)[..., :3]
    if p["flip_h"]:
        rgb = rgb[:, ::-1]
    if p["flip_v"]:
        rgb = rgb[::-1]
    if p["rot90"]:
        rgb = np.rot90(rgb, -p["rot90"])  # clockwise, as the Rust loader
    rgb = np.ascontiguousarray(rgb)
    if p["stain"] is not None:
        rgb = hed_jitter(rgb, *p["stain"])
    return brightness_contrast(rgb, p["brightness"], p["contrast"])


def make_batch(task: tuple[int, list[tuple[int, int, int]]]) -> np.ndarray:
    index, specs = task
    a = _args
    out = np.empty((len(specs), a.patch_size, a.patch_size, 3), np.uint8)
    for pos, (image, x, y) in enumerate(specs):
        rng = np.random.default_rng([a.seed, index, pos])
        out[pos] = read_patch(_slides[image], x, y, a.patch_size, augment_params(rng, a))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--patch-size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-augment", action="store_true")
    a = ap.parse_args()
    aug = dict(flips=True, rot90=True, stain_jitter=0.05, brightness=0.1, contrast=0.1, scale_jitter=0.1)
    if a.no_augment:
        aug = dict(flips=False, rot90=False, stain_jitter=0.0, brightness=0.0, contrast=0.0, scale_jitter=0.0)
    for k, v in aug.items():
        setattr(a, k, v)

    sizes = []
    for path in a.files:
        with open(path, "rb") as f:  # page cache warm, as the Rust benchmark
            while f.read(1 << 20):
                pass
        sizes.append(openslide.OpenSlide(path).dimensions)
    rng = np.random.default_rng(a.seed)
    plan = []
    for b in range(a.batches):
        specs = []
        for _ in range(a.batch_size):
            i = int(rng.integers(0, len(sizes)))
            w, h = sizes[i]
            specs.append((i, int(rng.integers(0, max(1, w - a.patch_size + 1))), int(rng.integers(0, max(1, h - a.patch_size + 1)))))
        plan.append((b, specs))
    patches = a.batches * a.batch_size
    print(f"{a.patch_size} px patches, batches of {a.batch_size}, {a.batches} batches, augment {aug}")
    results = []
    for workers in a.workers:
        start = time.perf_counter()
        with mp.get_context("fork").Pool(workers, initializer=_init, initargs=(a.files, a)) as pool:
            for batch in pool.imap(make_batch, plan, chunksize=1):
                assert batch.shape == (a.batch_size, a.patch_size, a.patch_size, 3)
        seconds = time.perf_counter() - start
        r = dict(workers=workers, patches=patches, seconds=seconds, patches_per_s=patches / seconds,
                 patches_per_s_per_worker=patches / seconds / workers)
        results.append(r)
        print(f"{workers} worker(s): {patches} patches in {seconds:.2f} s = {r['patches_per_s']:.1f} patches/s "
              f"({r['patches_per_s_per_worker']:.1f} per worker)")
    print(json.dumps({"openslide_loader": results}))


if __name__ == "__main__":
    main()
