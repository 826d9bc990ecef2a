"""The share of the domain gap each method of experiments/domain-generalization.toml closes.

For every variant it reads the score stage's scores.json (per-image TP/FP/FN), takes the test
images of one scanner (default GT450, the held-out one), and prints F1, the paired difference to
`none`, and the share of the gap closed, (F1_method − F1_none) / (F1_oracle − F1_none), each with
a 95 % percentile interval from a paired bootstrap over the test images (the same resampled
images for every variant; F1 from the summed counts, as MIDOG computes it). Standard library only.

    python3 bench/dg_gap.py CACHE_DIR EXPERIMENT.toml [--pipeline BIN] [--scanner GT450] [--stage score]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
from pathlib import Path


def score_dirs(pipeline: str, cache: str, experiment: str, stage: str) -> dict[str, Path]:
    out = subprocess.run([pipeline, "status", experiment, "--cache-dir", cache, "--json"],
                         check=True, capture_output=True, text=True).stdout
    dirs = {}
    for row in json.loads(out):
        if row["stage"] == stage:
            key = row["key"]
            dirs[row["variant"]] = Path(cache) / "objects" / key[:2] / key / "out"
    return dirs


def f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache")
    ap.add_argument("experiment")
    ap.add_argument("--pipeline", default="bin/pipeline")
    ap.add_argument("--scanner", default="GT450")
    ap.add_argument("--stage", default="score")
    ap.add_argument("--baseline", default="none")
    ap.add_argument("--oracle", default="oracle")
    ap.add_argument("--resamples", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    counts: dict[str, dict[int, tuple[int, int, int]]] = {}
    for variant, d in score_dirs(a.pipeline, a.cache, a.experiment, a.stage).items():
        scores = json.loads((d / "scores.json").read_text())
        counts[variant] = {
            img["id"]: (img["tp"], img["fp"], img["fn"])
            for img in scores["images"]
            if img["split"] == "test" and (a.scanner == "all" or img["scanner"] == a.scanner)
        }
    ids = sorted(counts[a.baseline])
    for v, c in counts.items():
        if sorted(c) != ids:
            raise SystemExit(f"variant {v} is tested on other {a.scanner} images than {a.baseline}: not paired")

    def f1_of(variant: str, sample: list[int]) -> float:
        tp = fp = fn = 0
        for i in sample:
            t, p, n = counts[variant][i]
            tp, fp, fn = tp + t, fp + p, fn + n
        return f1(tp, fp, fn)

    rng = random.Random(a.seed)
    samples = [[rng.choice(ids) for _ in ids] for _ in range(a.resamples)]
    variants = list(counts)

    def interval(values: list[float]) -> tuple[float, float]:
        v = sorted(x for x in values if x == x)
        if not v:
            return float("nan"), float("nan")
        return v[int(0.025 * (len(v) - 1))], v[int(0.975 * (len(v) - 1))]

    boot = {v: [f1_of(v, s) for s in samples] for v in variants}
    base, oracle = a.baseline, a.oracle
    gap = f1_of(oracle, ids) - f1_of(base, ids)
    gtp = sum(c[0] for c in counts[base].values()) + sum(c[2] for c in counts[base].values())
    print(f"{a.scanner} test images: {len(ids)} ({gtp} mitotic figures); {a.resamples} paired bootstrap resamples")
    print(f"gap {oracle} − {base}: {gap:+.3f} F1, 95 % interval "
          f"[{interval([o - b for o, b in zip(boot[oracle], boot[base])])[0]:+.3f}, "
          f"{interval([o - b for o, b in zip(boot[oracle], boot[base])])[1]:+.3f}]")
    print(f"{'variant':<14} {'F1':>6} {'95 % interval':>16} {'Δ vs ' + base:>10} {'95 % interval':>18} {'share of gap':>13} {'95 % interval':>18}")
    for v in variants:
        f = f1_of(v, ids)
        lo, hi = interval(boot[v])
        d = [x - y for x, y in zip(boot[v], boot[base])]
        dlo, dhi = interval(d)
        shares = [(x - y) / (o - y) if o - y > 1e-9 else float("nan") for x, y, o in zip(boot[v], boot[base], boot[oracle])]
        slo, shi = interval(shares)
        share = (f - f1_of(base, ids)) / gap if abs(gap) > 1e-9 else float("nan")
        print(f"{v:<14} {f:6.3f} [{lo:6.3f}, {hi:6.3f}] {f - f1_of(base, ids):+10.3f} [{dlo:+7.3f}, {dhi:+7.3f}] "
              f"{share:13.2f} [{slo:+7.2f}, {shi:+7.2f}]")


if __name__ == "__main__":
    main()
