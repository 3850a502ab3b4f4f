"""Head-only refresh benchmark: fit the classifier head on N cached 512-d features.

The fast refresh of issue 5 (``flask model train --head-only``) fits a logistic-regression head on
the features scoring already stored; this times that fit on synthetic features of the same shape,
and a full pass of the network's fc layer over them for scale.

    python bench/head_bench.py --n 40000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.scores import fit_head  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40_000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, args.n)
    features = (rng.normal(size=(args.n, args.dim)) + labels[:, None] * 0.1).astype(np.float32)
    started = time.perf_counter()
    head = fit_head(features, labels)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    logits = head.logits(features)
    apply_seconds = time.perf_counter() - started
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    print(f"fit_head on {args.n} x {args.dim} features: {fit_seconds:.2f} s (target < 10 s)")
    print(f"scoring them with the new head: {apply_seconds:.3f} s; train accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
