"""Training as a background job: select the labelled data, train, calibrate, evaluate, register.

The network code lives in ``model/``; this module only feeds it stored pixels and records the
outcome as a ModelVersion. Scoring every image follows as its own job. With ``nproc`` > 1 the
network is trained by torchrun in that many processes (:mod:`.distributed`) and the
checkpoint it returns is registered the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import current_app

from model.checkpoint import save_checkpoint
from model.config import TrainConfig
from model.train import TrainingStopped, train

from ...jobs import JobCancelled, handler
from ...models import ModelVersion
from ..importing.pixels import pixels_for_input
from ..records import versions
from .distributed import train_distributed
from .engines import measured_precision
from .evaluation import measure_at_operating_point
from .normalisation import channel_stats
from .oof_training import queue_after_training
from .progress import Throttle
from .trainset import TrainingSet, labels_changed_since, select_training_set

# Where a value the user chose can come from, by training parameter: the job's own parameter
# (a CLI flag or the Versions page's field), then the environment, then the preset.
_CHOSEN = {
    "epochs": ("--epochs", "DEFAULT_EPOCHS", "REALFAKE_EPOCHS"),
    "image_size": ("--image-size", "DEFAULT_IMAGE_SIZE", "REALFAKE_IMAGE_SIZE"),
}


# The input mode's flags (``model.crops``); no environment variable chooses them.
_INPUT_FLAGS = {"input_mode": "--input", "downscale": "--downscale", "crop_grid": "--crop-grid"}


def resolve_train_config(params: dict[str, Any]) -> tuple[TrainConfig, dict[str, str]]:
    """TrainConfig from job parameters, and where its preset, size and epochs came from.

    A preset is whole: each of its values holds unless the job's parameters (a flag, the
    Versions page) or an explicit setting (``REALFAKE_IMAGE_SIZE`` / ``REALFAKE_EPOCHS`` set
    in the environment, or the app's configuration) chooses that value; nothing falls back to a
    global default over a preset's value.
    """
    config = current_app.config
    preset = params.get("preset") or config["TRAIN_PRESET"]
    sources = {"preset": "--preset" if params.get("preset") else "REALFAKE_TRAIN_PRESET"}
    overrides: dict[str, Any] = {}
    for key, (flag, config_key, variable) in _CHOSEN.items():
        if params.get(key):
            overrides[key], sources[key] = int(params[key]), flag
        elif config.get(config_key):
            overrides[key], sources[key] = int(config[config_key]), variable
        else:
            sources[key] = f"preset {preset}"
    crop_choices = {key: params[key] for key in _INPUT_FLAGS if params.get(key) is not None}
    overrides.update(crop_choices)
    chosen = ", ".join(_INPUT_FLAGS[key] for key in crop_choices)
    sources["input_mode"] = chosen or f"preset {preset}"
    if params.get("residual") is not None:
        overrides["residual"], sources["residual"] = params["residual"], "--residual"
    else:
        sources["residual"] = f"preset {preset}"
    overrides.update(
        device=config["MODEL_DEVICE"],
        weights_path=config["IMAGENET_WEIGHTS"] or None,
        weights_sha256=config["IMAGENET_WEIGHTS_SHA256"] or None,
        seed=int(params.get("seed") or 0),
        **dict(params.get("options") or {}),
    )
    trained = TrainConfig.preset(preset, **overrides)
    if trained.input_mode == "resize" and {"downscale", "crop_grid"} & set(crop_choices):
        raise ValueError("--downscale and --crop-grid apply to --input crops only")
    return trained, sources


def train_config_from(params: dict[str, Any]) -> TrainConfig:
    """TrainConfig from job parameters (see :func:`resolve_train_config`)."""
    return resolve_train_config(params)[0]


def describe_settings(config: TrainConfig, sources: dict[str, str]) -> str:
    """One log line naming the preset, size and epochs and where each came from."""
    return (
        f"preset {config.preset_name} ({sources['preset']}); "
        f"image size {config.image_size} ({sources['image_size']}); "
        f"epochs {config.epochs} ({sources['epochs']}); "
        f"input {config.input_settings().describe()} ({sources.get('input_mode', 'preset')}); "
        f"residual {config.residual} ({sources.get('residual', 'preset')})"
    )


def check_trainable(trainset: TrainingSet) -> None:
    """Refuse a training set without labelled images of both classes in train and val."""
    for name, part in (("train", trainset.train), ("val", trainset.val)):
        if set(part.labels) != {0, 1}:
            raise ValueError(
                f"the {name} split needs labelled images of both classes "
                f"(has {len(part)}: {trainset.label_counts()[name]})"
            )


@handler("train")
def train_job(context) -> dict[str, Any]:
    """Train a new version on the effective labels, then queue scoring with it.

    ``head_only`` retrains just the classifier head of the active version on its cached
    features (seconds); otherwise the whole network is fine-tuned (minutes), in ``nproc``
    torchrun processes when that is more than one.
    """
    params = context.params
    nproc = int(params.get("nproc") or 1)
    if params.get("head_only"):
        if nproc > 1:
            raise ValueError("a head-only refresh runs in one process: leave out nproc")
        from .head_training import train_head

        return train_head(context)
    trainset = select_training_set(params.get("datasets"))
    check_trainable(trainset)
    config, sources = resolve_train_config(params)
    config = measured_precision(config, context.log)
    size = config.image_size
    context.log(f"data: {trainset.label_counts()}; {describe_settings(config, sources)}")
    mean, std = channel_stats(trainset.train.ids, size)
    context.log(f"normalisation mean {np.round(mean, 4).tolist()} std {np.round(std, 4).tolist()}")
    if nproc > 1:
        network, meta = train_distributed(context, trainset, config, mean, std, nproc)
        context.log(f"trained from {meta['init_weights']}; temperature {meta['temperature']:.3f}")
        version = register_checkpoint(trainset, config, network, meta, context)
    else:
        version = _train_here(context, trainset, config, mean, std)
    queue_after_training(version, params)  # a label-mistake job, or the scoring
    return {"version": version.name, "active": version.is_active, "metrics": version.metrics}


def _train_here(context, trainset, config, mean, std) -> ModelVersion:
    """Train in this process and register the result."""
    train_ids, train_labels = trainset.train.as_arrays()
    val_ids, val_labels = trainset.val.as_arrays()
    mode = config.input_settings()
    try:
        result = train(
            pixels_for_input(mode, train_ids),
            train_labels,
            pixels_for_input(mode, val_ids),
            val_labels,
            config,
            mean,
            std,
            on_progress=Throttle(context.progress),
            should_stop=context.cancel_requested,
        )
    except TrainingStopped as stop:
        raise JobCancelled() from stop
    context.log(f"trained from {result.init_weights}; temperature {result.temperature:.3f}")
    return register_version(context, trainset, config, result)


def register_version(context, trainset, config, result) -> ModelVersion:
    """Save the checkpoint and add the ModelVersion row, its operating point fitted on the
    run's own validation outputs (``result``) and its test split measured."""
    meta = result.checkpoint_meta(
        train_set_sha256=trainset.sha256(), label_counts=trainset.label_counts()
    )
    return register_checkpoint(trainset, config, result.model, meta, context, trained=result)


def register_checkpoint(
    trainset, config, network, meta, context=None, trained=None
) -> ModelVersion:
    """Register a trained network and its checkpoint meta as the next version.

    The checkpoint is saved under the version's name (its meta naming the version), measured
    on val and test (val from ``trained``, the run's own result, when given and reproducible
    here: ``evaluation.measure_at_operating_point``), and recorded with the labels it was
    trained on. ``context`` is the job doing it, if any (checkpoints trained elsewhere are
    registered from the command line).
    """
    name = versions.next_version_name()
    path = versions.models_dir() / f"{name}.pt"
    meta = {**meta, "version": name}
    save_checkpoint(path, network, meta)
    versions.save_training_labels(name, trainset)
    threshold, metrics = measure_at_operating_point(
        path,
        trainset,
        config.image_size,
        trained=trained,
        log=None if context is None else context.log,
    )
    if context is not None:
        context.log(
            f"FAKE threshold {threshold:.4f} for a false-positive rate of "
            f"{metrics['val']['target_fpr']:.1%} on real validation images"
        )
    moved = labels_changed_since(versions.active_version())
    version = versions.register(
        name,
        path,
        kind="full",
        labels_changed=moved["total"] if moved else None,
        image_size=config.image_size,
        init_weights=meta["init_weights"],
        temperature=float(meta["temperature"]),
        threshold=threshold,
        train_args={
            **config.to_dict(),
            "preset": config.preset_name,
            "datasets": trainset.datasets,
            "labels_moved": moved,
        },
        metrics=metrics,
        history=meta["history"],
        train_set_sha256=trainset.sha256(),
        n_train=len(trainset.train),
        job_id=None if context is None else context.job_id,
    )
    if version.is_active and context is not None:
        context.log(f"{name} activated")
    return version
