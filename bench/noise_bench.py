r"""Label-mistake discovery: do flipped labels surface first in the ranking?

Takes ``--n`` CIFAKE images (default 4,000, half of each class, a seeded sample of
``../shared/datasets/cifake-train-40k.zip``), flips ``--flip`` of their labels (default 5%) at
random, trains ``--folds`` networks (default 5) with the ``--preset`` recipe (default ``cifake``,
32 px) for ``--epochs`` each, every one without its fold and scoring that fold
(``model.out_of_fold``), and ranks the images by confident learning (``model.confident``:
per-class thresholds, flagged first, then self-confidence). Prints the share of the flipped
labels found in the first 5% of the ranking (the issue's target: >= 70%; random order finds 5%),
the same for plain self-confidence ranking, the out-of-fold accuracy against the noisy and the
true labels, and the wall and CPU time.

``--margin-epochs E`` (default: the preset's epochs, as the app's ``--oof-epochs``; 0 leaves it
out) adds one network trained on all the images for E epochs with the held-out networks' batch,
each image ranked by its mean margin over the run (``model.margins``, area under the margin:
``margins_``), as the app's ``--oof-method margins`` does.
``--margin-networks N`` averages the margins of N such networks (seeds ``--seed``, +1, ...), as
the app's ``--oof-networks``, taking turns over ``model.margins.VIEWS`` (the recipe, the medium
stem, the NPR residual input, both: ``margins_recipe_by_network``); ``--margin-same`` trains
them all with the recipe, to compare. The figures also give each network alone
(``margins_found_by_network``), the average of the first 1, 2, ... of them
(``margins_found_by_first_networks``) and the first network's ranking after each epoch
(``margins_found_by_epoch_first_network``: the mean margin over the epochs so far).
``--folds 0`` leaves the held-out networks out.

``--prior N`` adds the desk's other case: an active version, trained before on N other images
(none of the sample), scoring a newly imported noisy dataset it never saw. One network is
trained on them for ``--prior-minutes`` of CPU time with the same recipe, and the flips are
ranked by its probabilities (``prior_``: what scoring uses for labelled images a version never
trained on), by a light model fitted in folds on its features (``prior_features_``: the scoring
job's default without out-of-fold networks) and by the mean of its and the held-out networks'
probabilities (``mean_``).

Examples::

    python bench/noise_bench.py                            # the issue's run: 4,000 images, K=5
    python bench/noise_bench.py --epochs 8 --threads 2
    python bench/noise_bench.py --n 400 --folds 2 --epochs 1   # a smoke run (a minute)
    python bench/noise_bench.py --threads 2 --prior 20000 --prior-minutes 5   # with a prior version
    python bench/noise_bench.py --option residual=npr         # any TrainConfig field
    python bench/noise_bench.py --oof-min-steps 0             # the preset's batch in every fold
    python bench/noise_bench.py --folds 0                     # the margins only
    python bench/noise_bench.py --folds 0 --margin-networks 2 # two margins networks averaged
    python bench/noise_bench.py --folds 0 --margin-networks 2 --margin-same  # both the recipe

Nothing is written anywhere; the images are decoded from the zip into memory.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import option_values  # noqa: E402
from model.calibration import apply_temperature  # noqa: E402
from model.confident import find_label_issues, rank_label_issues, self_confidence  # noqa: E402
from model.config import TrainConfig  # noqa: E402
from model.margins import (  # noqa: E402
    average_margins,
    describe_recipe,
    p_fake_from_margins,
    training_margins,
)
from model.out_of_fold import MIN_STEPS_PER_EPOCH, fold_recipe, out_of_fold_p_fake  # noqa: E402
from model.predict import Predictor  # noqa: E402
from model.scores import out_of_sample_probabilities  # noqa: E402
from model.stats import channel_stats  # noqa: E402
from model.train import train  # noqa: E402

DEFAULT_ZIP = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifake-train-40k.zip"


def load_sample(path: Path, count: int, seed: int, size: int = 32, prior: int = 0):
    """A seeded, class-balanced sample of the zip: uint8 (count, size, size, 3) and 0/1 labels;
    with ``prior`` > 0 also a second class-balanced sample of that many other images (none in
    the first), as ``(images, labels, prior_images, prior_labels)``."""
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist() if n.lower().endswith(".jpg"))
        by_class = [[n for n in names if "/REAL/" in n], [n for n in names if "/FAKE/" in n]]
        rng = np.random.default_rng(seed)
        drawn = [rng.permutation(members) for members in by_class]
        half, other = count // 2, prior // 2
        if min(len(members) for members in drawn) < half + other:
            raise SystemExit(f"the zip has too few images for --n {count} and --prior {prior}")
        chosen = [(n, label) for label, members in enumerate(drawn) for n in members[:half]]
        rest = [(n, lab) for lab, members in enumerate(drawn) for n in members[half : half + other]]

        def decode(pairs):
            images = np.empty((len(pairs), size, size, 3), dtype=np.uint8)
            for index, (name, _) in enumerate(pairs):
                with Image.open(io.BytesIO(archive.read(name))) as image:
                    image = image.convert("RGB")
                    if image.size != (size, size):
                        image = image.resize((size, size), Image.Resampling.BILINEAR)
                    images[index] = np.asarray(image)
            return images, np.array([label for _, label in pairs], dtype=np.int64)

        if not prior:
            return decode(chosen)
        return (*decode(chosen), *decode(rest))


def flip_labels(labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The labels with ``share`` of them flipped at random, and the flipped indices."""
    rng = np.random.default_rng(seed + 1)
    flipped = np.sort(rng.choice(labels.size, int(round(share * labels.size)), replace=False))
    noisy = labels.copy()
    noisy[flipped] = 1 - noisy[flipped]
    return noisy, flipped


def found_in_top(order: np.ndarray, flipped: np.ndarray, share: float = 0.05) -> float:
    """The fraction of the flipped labels among the first ``share`` of ``order``."""
    top = order[: int(round(share * order.size))]
    return float(np.isin(flipped, top).mean()) if flipped.size else 0.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--n", type=int, default=4000, help="images (half of each class)")
    parser.add_argument("--flip", type=float, default=0.05, help="share of labels flipped")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--preset", default="cifake")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--option", action="append", default=[], help="TrainConfig KEY=VALUE (residual=npr, ...)"
    )
    parser.add_argument(
        "--prior",
        type=int,
        default=0,
        help="also train one network on this many other images (none of the --n) and rank by "
        "its probabilities, alone and averaged with the held-out ones: the app's case of an "
        "active version scoring a new import it never trained on",
    )
    parser.add_argument("--prior-minutes", type=float, default=5.0, help="its CPU-time budget")
    parser.add_argument(
        "--oof-min-steps",
        type=int,
        default=MIN_STEPS_PER_EPOCH,
        help="the held-out networks' batch is halved until an epoch has this many steps, as in "
        "the app (model.out_of_fold.fold_recipe); 0 keeps the preset's batch",
    )
    parser.add_argument(
        "--margin-epochs",
        type=int,
        default=None,
        help="epochs of the one network whose training margins rank the images "
        "(model.margins; default: the preset's, as in the app); 0 leaves it out",
    )
    parser.add_argument(
        "--margin-networks",
        type=int,
        default=1,
        help="margins networks (seeds seed, seed+1, ...) whose margins are averaged, as the "
        "app's --oof-networks",
    )
    parser.add_argument(
        "--margin-same",
        action="store_true",
        help="train every margins network with the recipe (only the seed apart) instead of "
        "taking turns over model.margins.VIEWS, as the app does",
    )
    return parser.parse_args(argv)


def ranking_figures(name: str, noisy, truth, flipped, p_fake) -> dict:
    """How one set of out-of-sample probabilities ranks the flipped labels."""
    confident_order = rank_label_issues(noisy, p_fake)
    self_order = np.argsort(self_confidence(noisy, p_fake), kind="stable")
    return {
        f"{name}flagged": int(find_label_issues(noisy, p_fake).sum()),
        f"{name}found_in_first_5pct_confident_learning": found_in_top(confident_order, flipped),
        f"{name}found_in_first_5pct_self_confidence": found_in_top(self_order, flipped),
        f"{name}accuracy_vs_noisy": float(((p_fake >= 0.5) == noisy.astype(bool)).mean()),
        f"{name}accuracy_vs_truth": float(((p_fake >= 0.5) == truth.astype(bool)).mean()),
    }


def main(argv=None) -> dict:
    """Run the bench; print and return its figures."""
    args = parse_args(argv)
    if not args.zip.exists():
        raise SystemExit(f"{args.zip} not found (see ../shared/datasets/README.md)")
    started, started_cpu = time.perf_counter(), time.process_time()
    loaded_sets = load_sample(args.zip, args.n, args.seed, args.image_size, args.prior)
    images, truth = loaded_sets[:2]
    noisy, flipped = flip_labels(truth, args.flip, args.seed)
    config = TrainConfig.preset(
        args.preset,
        epochs=args.epochs,
        image_size=args.image_size,
        threads=args.threads,
        seed=args.seed,
        device="cpu",
        **option_values(args.option),
    )
    mean, std = channel_stats(images)
    loaded = time.perf_counter() - started

    def on_fold(done: int, total: int) -> None:
        print(f"fold {done}/{total} done at {time.perf_counter() - started:.0f} s", flush=True)

    figures = {
        "images": int(args.n),
        "flipped": int(flipped.size),
        "folds": args.folds,
        "preset": args.preset,
        "epochs": args.epochs,
        "image_size": args.image_size,
        "options": option_values(args.option),
    }
    p_fake = None
    if args.folds:
        p_fake = out_of_fold_p_fake(
            images, noisy, config, mean, std, args.folds, on_fold, min_steps=args.oof_min_steps
        )
        fold = fold_recipe(config, args.n - args.n // args.folds, args.oof_min_steps)
        oof = ranking_figures("", noisy, truth, flipped, p_fake)
        figures.update(
            {
                "oof_batch_size": fold.batch_size,
                "oof_lr": round(fold.lr, 6),
                **{key.replace("accuracy", "oof_accuracy", 1): value for key, value in oof.items()},
                "oof_seconds": round(time.perf_counter() - started - loaded, 1),
            }
        )
    if args.margin_epochs != 0:
        figures.update(margin_figures(args, images, noisy, truth, flipped, config, mean, std))
    if args.prior:
        figures.update(prior_figures(args, loaded_sets, config, noisy, truth, flipped, p_fake))
    figures.update(
        {
            "load_seconds": round(loaded, 1),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "cpu_seconds": round(time.process_time() - started_cpu, 1),
            "threads": torch.get_num_threads() if args.threads is None else args.threads,
            "load_average": round(os.getloadavg()[0], 1),
        }
    )
    for key, value in figures.items():
        print(f"{key}: {value}")
    return figures


def margin_figures(args, images, noisy, truth, flipped, config, mean, std) -> dict:
    """``--margin-networks`` networks on all the images, each image ranked by its mean training
    margin (averaged over the networks); also each network alone, and the first network's
    ranking after each epoch (the mean over the epochs so far: does stopping early help?)."""
    started = time.perf_counter()
    epochs = args.margin_epochs or TrainConfig.preset(args.preset).epochs
    recipe = replace(config, epochs=epochs)
    runs: list = []
    margins = training_margins(
        images,
        noisy,
        recipe,
        mean,
        std,
        min_steps=args.oof_min_steps,
        networks=args.margin_networks,
        runs=runs,
        varied=not args.margin_same,
    )
    seconds = round(time.perf_counter() - started, 1)
    p_fake = p_fake_from_margins(margins, noisy)
    whole = fold_recipe(recipe, args.n, args.oof_min_steps)
    by_epoch = runs[0].margins_by_epoch
    held = np.cumsum(~np.isnan(by_epoch), axis=0)  # an image sits out an epoch's dropped batch
    so_far = np.where(
        held > 0, np.cumsum(np.nan_to_num(by_epoch), axis=0) / np.maximum(held, 1), np.nan
    )

    def found(margins_now) -> float:
        return found_in_top(
            rank_label_issues(noisy, p_fake_from_margins(margins_now, noisy)), flipped
        )

    return {
        "margins_epochs": epochs,
        "margins_networks": args.margin_networks,
        "margins_batch_size": whole.batch_size,
        **ranking_figures("margins_", noisy, truth, flipped, p_fake),
        "margins_found_by_network": [found(run.margins) for run in runs],
        # the average of the first 1, 2, ... networks: what --margin-networks 1, 2, ... find
        "margins_found_by_first_networks": [
            found(average_margins([run.margins for run in runs[:count]]))
            for count in range(1, len(runs) + 1)
        ],
        "margins_recipe_by_network": [describe_recipe(run.config, recipe) for run in runs],
        "margins_seconds_by_network": [round(run.seconds, 1) for run in runs],
        # precision "auto" is timed once per bench run (every network then trains in it), so
        # two bench runs of one seed may still train in different precisions and rank a few
        # points apart (pin it with --option precision=fp32)
        "margins_precision_by_network": [
            f"{run.policy}{' + small-conv grad' if run.config.small_conv_grad else ''}"
            for run in runs
        ],
        "margins_found_by_epoch_first_network": [found(row) for row in so_far],
        "margins_seconds": seconds,
    }


def prior_figures(args, loaded_sets, config, noisy, truth, flipped, oof_p_fake) -> dict:
    """Train the prior network on the other images (its own statistics, the recipe, a CPU-time
    budget) and rank by its probabilities of the sample, alone and averaged with ``oof_p_fake``."""
    images, _, prior_images, prior_labels = loaded_sets
    started = time.perf_counter()
    prior_config = replace(config, epochs=1000, max_minutes=args.prior_minutes, budget_clock="cpu")
    mean, std = channel_stats(prior_images)
    result = train(prior_images, prior_labels, images, noisy, prior_config, mean, std)
    p_prior = apply_temperature(result.val_logits, 1.0)
    # The scoring job's default without out-of-fold networks: a light model in folds on the
    # version's features of the labelled images (model.scores), here the prior's features.
    predictor = Predictor(result.model, result.checkpoint_meta(), device="cpu", precision="fp32")
    features = predictor.predict(images).features
    p_light = out_of_sample_probabilities(features, noisy, folds=args.folds, seed=args.seed)
    return {
        "prior_images": int(prior_labels.size),
        "prior_minutes": args.prior_minutes,
        "prior_epochs": len(result.history),
        "prior_seconds": round(time.perf_counter() - started, 1),
        **ranking_figures("prior_", noisy, truth, flipped, p_prior),
        **ranking_figures("prior_features_", noisy, truth, flipped, p_light),
        **(
            {}
            if oof_p_fake is None
            else ranking_figures("mean_", noisy, truth, flipped, (p_prior + oof_p_fake) / 2)
        ),
    }


if __name__ == "__main__":
    main()
