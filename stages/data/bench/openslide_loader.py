"""Baseline for `pipeline bench loader`: what a Python training pipeline does today.

openslide-python reads 512 px patches at random positions of the same files, numpy (and PIL for
the bilinear resize) applies the same augmentations as midog-data's loader (flips, 90° rotations,
HED stain jitter with skimage's Ruifrok–Johnston matrix in optical density, brightness,
contrast around the patch mean, scale jitter; with --fourier, Fourier-domain mixing of the
low-frequency amplitude with a style patch from a bank of random patches of the other files,
computed once per worker, as the Rust loader does), and N worker processes (as torch DataLoader
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
_bank: dict[int, np.ndarray] = {}  # style entry → low-frequency amplitude [3, 2b-1, b]
_bank_draws: list[tuple[int, int, int]] = []


def _init(paths: list[str], args: argparse.Namespace, bank_draws: list[tuple[int, int, int]]) -> None:
    global _slides, _args, _bank_draws
    _slides = [openslide.OpenSlide(p) for p in paths]
    _args = args
    _bank_draws = bank_draws


def _window(spec: np.ndarray, b: int) -> np.ndarray:
    """Rows |ky| < b and columns 0 ≤ kx < b of an rfft2 spectrum [..., n, n/2 + 1]."""
    return np.concatenate([spec[..., :b, :b], spec[..., spec.shape[-2] - b + 1:, :b]], axis=-2)


def style_amplitude(entry: int) -> np.ndarray:
    if entry not in _bank:
        image, x, y = _bank_draws[entry]
        n = _args.patch_size
        rgb = np.asarray(_slides[image].read_region((x, y), 0, (n, n)))[..., :3]
        b = int(np.floor(n * _args.fourier_window))
        _bank[entry] = np.abs(_window(np.fft.rfft2(rgb.astype(np.float32).transpose(2, 0, 1)), b))
    return _bank[entry]


def fourier_mix(rgb: np.ndarray, style: np.ndarray, beta: float) -> np.ndarray:
    """The low-frequency amplitude moves by beta towards the style's; the phase is kept."""
    n = rgb.shape[0]
    b = int(np.floor(n * _args.fourier_window))
    spec = np.fft.rfft2(rgb.astype(np.float32).transpose(2, 0, 1))
    low = _window(spec, b)
    amp = np.abs(low)
    mixed = np.where(amp > 0, low / np.maximum(amp, 1e-12) * (amp + beta * (style - amp)), beta * style)
    spec[..., :b, :b] = mixed[..., :b, :]
    spec[..., n - b + 1:, :b] = mixed[..., b:, :]
    out = np.fft.irfft2(spec, s=(n, n)).transpose(1, 2, 0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


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
    if p.get("style") is not None:
        rgb = fourier_mix(rgb, style_amplitude(p["style"]), _args.fourier)
    if p["stain"] is not None:
        rgb = hed_jitter(rgb, *p["stain"])
    return brightness_contrast(rgb, p["brightness"], p["contrast"])


def make_batch(task: tuple[int, list[tuple[int, int, int]]]) -> np.ndarray:
    index, specs = task
    a = _args
    out = np.empty((len(specs), a.patch_size, a.patch_size, 3), np.uint8)
    for pos, (image, x, y) in enumerate(specs):
        rng = np.random.default_rng([a.seed, index, pos])
        p = augment_params(rng, a)
        if a.fourier is not None:
            start = int(rng.integers(0, len(_bank_draws)))
            others = [(start + i) % len(_bank_draws) for i in range(len(_bank_draws))]
            p["style"] = next((k for k in others if _bank_draws[k][0] != image), None)
        out[pos] = read_patch(_slides[image], x, y, a.patch_size, p)
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
    ap.add_argument("--fourier", type=float, default=None, help="Fourier mixing blend ratio beta (off if not given)")
    ap.add_argument("--fourier-window", type=float, default=0.05)
    ap.add_argument("--fourier-bank", type=int, default=64)
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
    bank_draws = []
    for _ in range(a.fourier_bank if a.fourier is not None else 0):
        i = int(rng.integers(0, len(sizes)))
        w, h = sizes[i]
        bank_draws.append((i, int(rng.integers(0, max(1, w - a.patch_size + 1))), int(rng.integers(0, max(1, h - a.patch_size + 1)))))
    patches = a.batches * a.batch_size
    fourier = f", Fourier beta {a.fourier} window {a.fourier_window} bank {a.fourier_bank}" if a.fourier is not None else ""
    print(f"{a.patch_size} px patches, batches of {a.batch_size}, {a.batches} batches, augment {aug}{fourier}")
    results = []
    for workers in a.workers:
        start = time.perf_counter()
        with mp.get_context("fork").Pool(workers, initializer=_init, initargs=(a.files, a, bank_draws)) as pool:
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
