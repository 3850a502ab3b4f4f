"""``flask model tune``: measure this machine's fastest inference engine and keep the choice."""

from __future__ import annotations

import json

import click
from flask import current_app

from model.threads import configure_threads, describe


@click.command("tune")
@click.option(
    "--image-size",
    type=click.IntRange(min=16),
    help="Input size (default: the active version's, else REALFAKE_IMAGE_SIZE, else 224).",
)
@click.option("--no-compile", is_flag=True, help="Leave torch.compile out (it takes minutes).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def tune_command(image_size, no_compile, as_json) -> None:
    """Time eager, fused, TorchScript and compiled engines in fp32 and bf16 at a batch size or
    two, keep the fastest that agrees with eager fp32, and store it for scoring and evaluation."""
    threads = configure_threads()  # what a job worker uses, so the figures are the worker's
    from model.device import pick_device  # loads PyTorch
    from model.machine import cpu_description

    from ..services.training import engines

    model, meta, source = _network_for(image_size)
    device = pick_device(current_app.config["MODEL_DEVICE"])
    log = None if as_json else (lambda line: click.echo(f"  {line}"))
    if not as_json:
        click.echo(
            f"tuning {meta['image_size']} px on {device} ({cpu_description()}; "
            f"{describe(threads)}) with {source}"
        )
    result = engines.tune_inference(model, meta, device, include_compile=not no_compile, log=log)
    report = {
        **result.to_dict(),
        "cpu": cpu_description(),
        "network": source,
        "stored": str(engines.tuning_file()),
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"chosen: {result.engine} {result.precision} batch {result.batch_size}: "
        f"{result.images_per_second:.1f} img/s against eager fp32 "
        f"{result.baseline_images_per_second:.1f} img/s ({result.speedup:.2f}x); "
        f"compilation {result.compile_seconds:.0f} s; tuning took {result.seconds:.0f} s"
    )
    click.echo(f"stored in {engines.tuning_file()}: scoring and evaluation at this size use it")


def _network_for(image_size: int | None):
    """The active version's network when its size matches (or no size was asked for), else a
    random-weight ResNet18: speed does not depend on the weights, agreement is checked on it."""
    from model.checkpoint import load_checkpoint
    from model.tuning import random_network

    from ..services.records import versions

    active = versions.active_version()
    if active is not None and image_size in (None, active.image_size):
        model, meta = load_checkpoint(active.checkpoint_path)
        return model, meta, f"version {active.name}"
    size = image_size or int(current_app.config.get("DEFAULT_IMAGE_SIZE") or 224)
    model, meta = random_network(size)
    return model, meta, "a random-weight ResNet18"
