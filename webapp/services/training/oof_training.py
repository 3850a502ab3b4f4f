"""Out-of-fold networks as a background job, for the queue's "suspected label mistake" bucket.

The scoring job's default out-of-sample scores come from a light model on the version's own
features, and the version trained on those very images (their mistaken labels included). With
``oof_folds`` set, a training job hands over to this one before scoring: K networks with the
version's recipe (optionally fewer epochs), each trained without one fold of the version's
training images and scoring that fold, write ``models/<version>.oof.npz``. Scoring then takes an
image's out-of-sample p_fake from there when the image was trained on, and from the version
itself when it was not (val, test and other labelled images: the version never saw them).

With ``method`` ``margins`` the job trains one network with the same recipe instead (or
``networks`` of them, seeded one after another and taking turns over ``model.margins.VIEWS``:
the recipe, then with the medium stem, then the NPR residual input; their margins averaged), on
every labelled image (the version's val and test images too: it ranks labels, it is never
deployed or measured), and each image's label-mistake score comes from its mean margin over that
training (``model.margins``: area under the margin, one training instead of K). Those scores are
not out-of-sample probabilities, so the stored out-of-sample p_fake stays what it is without the
file: the light model's for the version's training images, the version's own for the others.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from model.config import TrainConfig
from model.margins import describe_recipe, network_recipe, p_fake_from_margins, training_margins
from model.out_of_fold import MIN_STEPS_PER_EPOCH, fold_recipe, out_of_fold_p_fake
from model.train import TrainingStopped

from ...jobs import JobCancelled, handler, submit
from ...models import ModelVersion
from ..importing.pixels import pixels_for_input
from ..records import versions
from .engines import measured_precision
from .normalisation import channel_stats


def oof_path(version: ModelVersion | str) -> Path:
    """Where a version's out-of-fold probabilities are kept, beside its checkpoint."""
    name = version if isinstance(version, str) else version.name
    return versions.models_dir() / f"{name}.oof.npz"


METHODS = ("folds", "margins")
"""How the job judges labels: K held-out networks over the version's training images, or the
training margins of one network (or the average of ``networks``) over every labelled image."""


def read_out_of_fold(version: ModelVersion) -> tuple[dict[int, float], str] | None:
    """The version's label-mistake file in one read: image id -> p_fake (held-out networks'
    out-of-fold p_fake of its training images, or every labelled image's at its training margin)
    and the method that made it (files from before margins: ``folds``); None when absent."""
    path = oof_path(version)
    if not path.exists():
        return None
    with np.load(path) as data:
        p_fake = dict(zip(data["ids"].tolist(), data["p_fake"].tolist(), strict=True))
        return p_fake, str(data["method"]) if "method" in data.files else "folds"


def queue_after_training(version: ModelVersion, params: dict[str, Any]) -> None:
    """What follows a training (a full one or a head refit) with the train job's ``params``: the
    label-mistake job they ask for (``oof_method`` / ``oof_folds``; it queues the scoring when it
    is done), else the scoring, unless ``score`` is off."""
    margins = params.get("oof_method") == "margins"
    if params.get("oof_folds") or margins:
        oof = {"version": version.name, "folds": params.get("oof_folds") or None}
        oof["method"] = "margins" if margins else "folds"
        if margins and params.get("oof_networks"):
            oof["networks"] = params["oof_networks"]
        submit(
            "oof", {**oof, "epochs": params.get("oof_epochs"), "score": params.get("score", True)}
        )
    elif params.get("score", True):
        submit("predict", {"version": version.name})


def oof_config(version: ModelVersion, epochs: int | None) -> TrainConfig:
    """The version's own recipe, with ``epochs`` when given (and no time budget); a head refit
    carries its parent's recipe (``versions.register_child``), the network it reuses.

    The precision is measured again (``"auto"``): the version's was chosen by timing its own
    network at its own batch, and the held-out and margins networks train at a smaller batch
    (``fold_recipe``) and, for margins, with other stems or residual inputs, where another
    precision can be the fastest."""
    config = TrainConfig.from_dict(version.train_args or {})
    return replace(config, epochs=int(epochs or config.epochs), max_minutes=None, precision="auto")


def _save_atomically(path: Path, **arrays) -> None:
    """Write the arrays beside ``path`` and move them into place: a killed job leaves only a
    ``.tmp`` file (which ``doctor`` removes), never a half-written file scoring would read."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(temporary, path)


@handler("oof")
def oof_job(context) -> dict[str, Any]:
    """Train K held-out networks over a version's training images (or one or more networks over
    every labelled image, recording their margins); then queue the version's scoring."""
    params = context.params
    version = versions.get_version(params.get("version"))
    method = params.get("method") or "folds"
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use {' or '.join(METHODS)}")
    folds = int(params.get("folds") or 5)
    networks = int(params.get("networks") or 1)
    config = oof_config(version, params.get("epochs"))
    if method == "margins":
        ids, labels = _every_labelled_image()
        context.log(
            f"{_networks(networks)} over every labelled image ({len(ids)}), "
            f"{'their' if networks > 1 else 'its'} training margins ranking label mistakes for "
            f"{version.name}: image size {config.image_size}; epochs {config.epochs}"
        )
        if networks > 1:
            context.log(
                "each network seeded apart, with "
                + "; ".join(
                    f"{number + 1}: {describe_recipe(network_recipe(config, number), config)}"
                    for number in range(networks)
                )
            )
        fit_images = len(ids)
    else:
        saved = versions.training_labels(version)
        ids, labels = saved["train_ids"], saved["train_labels"]
        context.log(
            f"{folds} out-of-fold networks over {len(ids)} training images of {version.name}: "
            f"image size {config.image_size}; epochs {config.epochs}"
        )
        fit_images = len(ids) - len(ids) // folds
    recipe = fold_recipe(config, fit_images)
    if recipe.batch_size != config.batch_size:
        context.log(
            f"batch {recipe.batch_size} (learning rate {recipe.lr:.2g}) instead of the version's "
            f"{config.batch_size}: an epoch of about {fit_images} images gets at least "
            f"{MIN_STEPS_PER_EPOCH} steps"
        )
    mean, std = channel_stats(ids.tolist(), config.image_size)
    pixels = pixels_for_input(config.input_settings(), ids.tolist())

    def precision_for(network: TrainConfig) -> TrainConfig:
        """Stored or measured once per machine (``engines``), and said in the job log."""
        return measured_precision(network, context.log)

    try:
        if method == "margins":
            margins = training_margins(
                pixels,
                labels,
                config,
                mean,
                std,
                _epoch_progress(context),
                context.cancel_requested,
                networks=networks,
                resolve=precision_for,
            )
            p_fake = p_fake_from_margins(margins, labels)
        else:
            p_fake = out_of_fold_p_fake(
                pixels,
                labels,
                config,
                mean,
                std,
                folds,
                _fold_progress(context),
                context.cancel_requested,
                resolve=precision_for,
            )
    except TrainingStopped as stop:
        raise JobCancelled() from stop
    _save_atomically(
        oof_path(version), ids=ids, p_fake=p_fake, folds=folds, method=method, networks=networks
    )
    agreement = float(((p_fake >= 0.5) == labels.astype(bool)).mean()) if len(ids) else None
    if params.get("score", True):
        submit("predict", {"version": version.name})
    return {
        "version": version.name,
        "method": method,
        "folds": folds if method == "folds" else None,
        "networks": networks if method == "margins" else None,
        "images": len(ids),
        "agreement": agreement,
    }


def _networks(count: int) -> str:
    return "one network" if count == 1 else f"{count} networks (their margins averaged)"


def _every_labelled_image() -> tuple[np.ndarray, np.ndarray]:
    """The ids and class indices (0 real, 1 fake) of every image with a real/fake effective
    label, by id."""
    from ..records.labels import effective_labels
    from .trainset import CLASS_INDEX

    labelled = sorted(
        (image_id, CLASS_INDEX[label])
        for image_id, label in effective_labels(None).items()
        if label in CLASS_INDEX
    )
    ids = np.array([image_id for image_id, _ in labelled], dtype=np.int64)
    return ids, np.array([label for _, label in labelled], dtype=np.int64)


def _fold_progress(context):
    def on_fold(done: int, total: int) -> None:
        context.progress(stage="out-of-fold", done=done, total=total, fraction=done / total)

    return on_fold


def _epoch_progress(context):
    def on_progress(update: dict) -> None:
        if update.get("phase") == "epoch":
            done, total = int(update["epoch"]), int(update["epochs"])
            context.progress(stage="margins", done=done, total=total, fraction=done / total)

    return on_progress
