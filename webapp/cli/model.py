"""``flask model train|predict|evaluate|calibrate|list|activate|export-trainset|register``."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import select

from ..extensions import db
from ..jobs import submit
from ..models import ModelVersion
from ..services.records import versions
from ..services.training import trainset
from ..services.training.train_request import label_check_problems, with_default_folds
from .evaluate import fmt
from .jobwait import wait_with_bar


@click.group("model", help="Train, score with, evaluate and activate model versions.")
def group() -> None:
    pass


@group.command("train")
@click.option(
    "--epochs", type=int, help="Epochs (default REALFAKE_EPOCHS if set, else the preset's)."
)
@click.option(
    "--image-size",
    type=int,
    help="Input size in pixels (default REALFAKE_IMAGE_SIZE if set, else the preset's).",
)
@click.option("--dataset", "datasets", multiple=True, help="Train on these datasets only.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--preset",
    help="Training recipe: seed, demo, cifake, cifake-robust or photos "
    "(default REALFAKE_TRAIN_PRESET).",
)
@click.option(
    "--input",
    "input_mode",
    type=click.Choice(["resize", "crops"]),
    help="resize: the whole image resized to the input size; crops: random crops of the input "
    "size at native resolution, scored over a grid of crops (default: the preset's).",
)
@click.option(
    "--downscale",
    type=click.FloatRange(1.0, 2.0),
    help="With --input crops: shrink images by this factor (1 = native, at most 2) first.",
)
@click.option(
    "--crop-grid",
    type=click.IntRange(1, 8),
    help="With --input crops: score each image as the mean over an N x N grid of crops.",
)
@click.option(
    "--residual",
    type=click.Choice(["none", "npr", "highpass"]),
    help="A fixed residual input beside the colours: npr (each pixel minus its 2x2 block's "
    "corner, where upsampling generators leave traces) or highpass (minus the 3x3 mean); "
    "default: the preset's.",
)
@click.option(
    "--head-only",
    is_flag=True,
    help="Fast refresh: retrain only the active version's classifier head on cached features.",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train with torchrun in N processes (DistributedDataParallel; one GPU each on CUDA).",
)
@click.option("--no-score", is_flag=True, help="Do not score every image after training.")
@click.option(
    "--oof-folds",
    type=click.IntRange(min=2),
    help="Before scoring, train K held-out networks so suspected label mistakes are judged "
    "by networks that never saw the image (K trainings' time).",
)
@click.option(
    "--oof-method",
    type=click.Choice(["folds", "margins"]),
    help="How label mistakes are judged before scoring: folds (K held-out networks over the "
    "training images, --oof-folds, default 5) or margins (one more network trained on every "
    "labelled image, each ranked by its mean margin over that training: one training's time).",
)
@click.option(
    "--oof-epochs", type=click.IntRange(min=1), help="Epochs of each held-out (or margins) network."
)
@click.option(
    "--oof-networks",
    type=click.IntRange(min=1, max=8),
    help="With --oof-method margins: train N margins networks and average their margins, a "
    "better ranking for N trainings' time (default 1). Each is seeded apart and they take "
    "turns: the recipe, then with the medium stem (slower), then the NPR residual input.",
)
@click.option("--wait", is_flag=True, help="Show progress and exit non-zero if the job fails.")
def train_command(
    epochs,
    image_size,
    datasets,
    seed,
    preset,
    input_mode,
    downscale,
    crop_grid,
    residual,
    head_only,
    nproc,
    no_score,
    oof_folds,
    oof_method,
    oof_epochs,
    oof_networks,
    wait,
) -> None:
    """Start a training job on the effective labels (one at a time)."""
    if head_only and nproc > 1:
        raise click.UsageError("--head-only refits a head in one process: leave out --nproc")
    if input_mode == "resize" and (downscale is not None or crop_grid is not None):
        raise click.UsageError("--downscale and --crop-grid apply to --input crops only")
    check = {"oof_method": oof_method, "oof_folds": oof_folds}
    check.update(oof_epochs=oof_epochs, oof_networks=oof_networks)
    problems = label_check_problems(check, name=lambda field: "--" + field.replace("_", "-"))
    if problems:
        raise click.UsageError("; ".join(problems))
    oof_folds = with_default_folds(check)["oof_folds"]
    active = versions.active_version()
    moved = trainset.labels_changed_since(active)
    if moved is not None:
        click.echo(
            f"since {active.name} was trained: {moved['changed']} labels changed, "
            f"{moved['added']} labelled images added"
        )
    params = {"epochs": epochs, "image_size": image_size, "datasets": list(datasets), "seed": seed}
    params.update(preset=preset, head_only=head_only, score=not no_score, nproc=nproc)
    params.update(oof_folds=oof_folds, oof_epochs=oof_epochs, oof_method=oof_method)
    if oof_networks is not None:
        params["oof_networks"] = oof_networks
    crops = {"input_mode": input_mode, "downscale": downscale, "crop_grid": crop_grid}
    params.update({key: value for key, value in crops.items() if value is not None})
    if residual is not None:
        params["residual"] = residual
    job = submit("train", params)
    click.echo(f"training job {job.id} ({job.state})")
    if wait:
        job = wait_with_bar(job.id, "train")
        click.echo(f"trained {job.result['version']}")
        if not no_score:
            _wait_for_scoring(job.result["version"])


def _wait_for_scoring(version_name: str) -> None:
    from ..models import Job

    held_out = db.session.scalar(
        select(Job).where(Job.kind == "oof").order_by(Job.id.desc()).limit(1)
    )
    if held_out is not None and (held_out.params or {}).get("version") == version_name:
        if (held_out.params or {}).get("method") == "margins":
            done = wait_with_bar(held_out.id, "training margins", unit="epoch")
            networks = int(done.result.get("networks") or 1)
            of = f" of {networks} networks" if networks > 1 else ""
            click.echo(f"training margins{of} over {done.result['images']} images")
        else:
            done = wait_with_bar(held_out.id, "held-out networks", unit="network")
            count, images = done.result["folds"], done.result["images"]
            click.echo(f"{count} held-out networks over {images} images")
    scoring = db.session.scalar(
        select(Job).where(Job.kind == "predict").order_by(Job.id.desc()).limit(1)
    )
    if scoring is not None and (scoring.params or {}).get("version") == version_name:
        done = wait_with_bar(scoring.id, "score")
        click.echo(f"scored {done.result['scored']} images with {version_name}")


@group.command("predict")
@click.option("--version", "version_name", help="Version name (default: the active one).")
@click.option("--wait", is_flag=True, help="Show progress and exit non-zero if the job fails.")
def predict_command(version_name, wait) -> None:
    """Score every stored image with a version (images it already scored are skipped)."""
    try:
        version = versions.get_version(version_name)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    job = submit("predict", {"version": version.name})
    click.echo(f"scoring job {job.id} ({job.state}) with {version.name}")
    if wait:
        job = wait_with_bar(job.id, "score")
        click.echo(f"scored {job.result['scored']} images")


def _fmt_int(value) -> str:
    return "n/a" if value is None else str(value)


@group.command("list")
def list_command() -> None:
    """Every version with its test accuracy; * marks the active one."""
    for version in db.session.scalars(select(ModelVersion).order_by(ModelVersion.id)):
        test = (version.metrics or {}).get("test") or (version.metrics or {}).get("val") or {}
        accuracy = test.get("accuracy")
        click.echo(
            f"{'*' if version.is_active else ' '} {version.name:<6} {version.kind:<5} "
            f"preset={version.preset:<6} size={version.image_size:<4} "
            f"epochs={_fmt_int(version.epochs):<3} input={version.input_mode:<6} "
            f"residual={version.residual:<8} "
            f"init={version.init_weights:<20} "
            f"n_train={version.n_train:<6} accuracy={fmt(accuracy)} "
            f"created={version.created_at:%Y-%m-%d %H:%M}"
        )


@group.command("activate")
@click.argument("name")
def activate_command(name) -> None:
    """Make version NAME the active one (promote or roll back), as the Versions page does:
    recorded in the audit trail (by ``cli``), scoring queued when NAME has not scored yet."""
    from ..services.records.audit_trail import CLI_ACTOR
    from ..services.training.activation import activate_with_scoring

    try:
        version = versions.get_version(name)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    scoring = activate_with_scoring(version, None, CLI_ACTOR)
    click.echo(f"{version.name} is active")
    if scoring is not None:
        click.echo(f"{version.name} has not scored the images yet: scoring is job {scoring.id}")


@group.command("export-trainset")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--epochs", type=int, help="Epochs (default REALFAKE_EPOCHS).")
@click.option("--image-size", type=int, help="Input size in pixels (default REALFAKE_IMAGE_SIZE).")
@click.option("--dataset", "datasets", multiple=True, help="Export these datasets only.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--preset", help="Training recipe (default REALFAKE_TRAIN_PRESET).")
def export_trainset_command(folder, epochs, image_size, datasets, seed, preset) -> None:
    """Write the training set and recipe to FOLDER, for torchrun on other machines."""
    from ..services.training.distributed import export_trainset
    from ..services.training.normalisation import channel_stats
    from ..services.training.training import check_trainable, train_config_from
    from ..services.training.trainset import select_training_set

    if folder.exists() and any(folder.iterdir()):
        raise click.ClickException(f"{folder} is not empty: export into a new folder")
    params = {"epochs": epochs, "image_size": image_size, "seed": seed, "preset": preset}
    try:
        trainset = select_training_set(list(datasets) or None)
        check_trainable(trainset)
        config = train_config_from(params)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    mean, std = channel_stats(trainset.train.ids, config.image_size)
    export_trainset(folder, trainset, config, mean, std)
    click.echo(
        f"exported {len(trainset.train)} training and {len(trainset.val)} validation images "
        f"{_exported_as(config)} to {folder}"
    )
    click.echo(
        "train: torchrun --nnodes N --nproc-per-node P --node-rank R --rdzv-endpoint HOST:PORT "
        f"-m model.distributed --data {folder} --out checkpoint.pt"
    )
    click.echo(f"then: flask --app wsgi model register checkpoint.pt --trainset {folder}")


def _exported_as(config) -> str:
    mode = config.input_settings()
    if mode.crops:
        return (
            f"at 1/{mode.downscale:g} scale (the {mode.crop_size} px crops are taken in training)"
        )
    return f"at {config.image_size} px"


@group.command("register")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--trainset",
    "trainset_folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder the checkpoint was trained on (written by export-trainset).",
)
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    help="Without --trainset: the datasets it was trained on (default: all).",
)
@click.option("--no-score", is_flag=True, help="Do not score every image with it.")
def register_command(checkpoint, trainset_folder, datasets, no_score) -> None:
    """Register a checkpoint trained outside the desk (e.g. by torchrun) as a new version."""
    from model.checkpoint import CheckpointError, load_checkpoint
    from model.config import TrainConfig

    from ..services.training.training import register_checkpoint

    try:
        network, meta = load_checkpoint(checkpoint)
        if not isinstance(meta.get("train_args"), dict) or "history" not in meta:
            raise CheckpointError(f"{checkpoint} was not written by the training code")
        config = TrainConfig.from_dict(meta["train_args"])
        trainset = _trainset_of(meta, trainset_folder, datasets)
    except ValueError as error:  # CheckpointError and TrainsetError included
        raise click.ClickException(str(error)) from error
    version = register_checkpoint(trainset, config, network, meta)
    accuracy = ((version.metrics or {}).get("val") or {}).get("accuracy")
    click.echo(f"registered {checkpoint} as {version.name} (val accuracy {fmt(accuracy)})")
    if not no_score:
        job = submit("predict", {"version": version.name})
        click.echo(f"scoring job {job.id} ({job.state}) with {version.name}")


def _trainset_of(meta: dict, folder, datasets):
    """What the checkpoint was trained on: the exported folder, or the desk's current labels
    when they still are exactly what it was trained on."""
    from ..services.training.distributed import trainset_from_export
    from ..services.training.trainset import select_training_set

    trainset = (
        trainset_from_export(folder)
        if folder is not None
        else select_training_set(list(datasets) or None)
    )
    if trainset.sha256() != meta.get("train_set_sha256"):
        where = f"{folder}" if folder is not None else "the desk's current labels"
        raise ValueError(
            f"the checkpoint was not trained on {where} (training-set fingerprints differ); "
            "pass --trainset with the folder it was trained on"
        )
    return trainset


@group.group("weights", help="ImageNet weights for the network's starting point.")
def weights_group() -> None:
    pass


@weights_group.command("fetch")
@click.option("--url", help="Where to download from (default: the URL torchvision publishes).")
@click.option("--sha256", help="Expected SHA-256 (default: the prefix the file name carries).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait.")
def weights_fetch_command(url, sha256, timeout) -> None:
    """Download torchvision's ResNet18 ImageNet weights into its cache, checked by SHA-256."""
    from flask import current_app

    from model.network import WeightsError
    from model.weights import FetchError, fetch_weights

    try:
        fetched = fetch_weights(url, sha256, timeout)
    except FetchError as error:
        raise click.ClickException(
            f"{error}. No network? Nothing was changed: training starts from random weights "
            "as before (or put the file in place by hand, see README)"
        ) from error
    except WeightsError as error:
        raise click.ClickException(f"{error}. Nothing was changed.") from error
    verb = "downloaded" if fetched.downloaded else "already present:"
    click.echo(
        f"{verb} {fetched.path} ({fetched.size_bytes / 1e6:.1f} MB, SHA-256 {fetched.sha256})"
    )
    configured = current_app.config.get("IMAGENET_WEIGHTS")
    if configured:
        click.echo(f"note: REALFAKE_IMAGENET_WEIGHTS={configured} is used instead of the cache")
    else:
        click.echo(
            "the next training whose preset starts from ImageNet (init auto, e.g. seed, demo) "
            f"uses them; its version records init imagenet:{fetched.sha256[:12]}"
        )


# Their own modules: tune measures this machine, evaluate and calibrate measure a version.
from .evaluate import calibrate_command, evaluate_command  # noqa: E402
from .tune import tune_command  # noqa: E402

for command in (evaluate_command, calibrate_command, tune_command):
    group.add_command(command)
