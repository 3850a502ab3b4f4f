"""``flask model evaluate`` and ``flask model calibrate``: measure a version on a labelled dataset,
and refit its temperature and threshold there as a new version; with the seed's metrics table.
"""

from __future__ import annotations

import json

import click

from ..jobs import submit

# model.perturb.PERTURBATIONS, spelled out so the CLI starts without loading PyTorch (a test
# checks the two agree).
PERTURBATIONS = ("jpeg75", "jpeg50", "resize50", "crop90")


@click.command("evaluate")
@click.option("--dataset", required=True, help="Dataset whose labelled images are measured.")
@click.option("--version", "version_name", help="Version name (default: the active one).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option(
    "--perturb",
    type=click.Choice(PERTURBATIONS),
    help="Score re-encoded (JPEG quality 75 / 50), halved or 90%-cropped copies instead.",
)
def evaluate_command(dataset, version_name, as_json, perturb) -> None:
    """Metrics of a version on all labelled images of a dataset."""
    try:
        metrics = _evaluate(dataset, version_name, perturb)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    click.echo(format_metrics(metrics))


@click.command("calibrate")
@click.option("--dataset", required=True, help="Labelled dataset to refit on.")
@click.option("--version", "version_name", help="Version to recalibrate (default: the active one).")
@click.option(
    "--target-fpr",
    type=float,
    help="Share of real images allowed to be called FAKE (default REALFAKE_TARGET_FPR).",
)
@click.option("--no-score", is_flag=True, help="Do not score every image with the new version.")
def calibrate_command(dataset, version_name, target_fpr, no_score) -> None:
    """Refit temperature and FAKE threshold on a labelled dataset; record a new version."""
    try:
        from ..services.training.recalibration import calibrate_on_dataset  # loads PyTorch

        version = calibrate_on_dataset(dataset, version_name, target_fpr)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    fitted = version.metrics["calibration"]
    point = fitted["operating_point"]
    click.echo(
        f"recorded {version.name} ({version.train_args['calibration_of']} recalibrated on "
        f"{dataset}, {fitted['n']} images): temperature {version.temperature:.3f}, "
        f"FAKE threshold {version.threshold:.4f} (FPR {point['fpr']:.3f}, TPR {point['tpr']:.3f}"
        f" on {dataset})"
    )
    if not version.is_active:
        click.echo(f"activate it with: flask --app wsgi model activate {version.name}")
    if not no_score:
        job = submit("predict", {"version": version.name})
        click.echo(f"scoring job {job.id} ({job.state}) with {version.name}")


def _evaluate(dataset: str, version_name: str | None, perturb: str | None) -> dict:
    """Clean metrics, or metrics on perturbed copies (loads PyTorch either way)."""
    if perturb:
        from ..services.training.robustness import evaluate_perturbed

        return evaluate_perturbed(dataset, perturb, version_name)
    from ..services.training.evaluation import evaluate_dataset

    return evaluate_dataset(dataset, version_name)


def format_metrics(metrics: dict) -> str:
    """The seed's table: accuracy, then precision / recall / F1 per class."""
    if not metrics.get("n"):
        return f"{metrics.get('version')} on {metrics.get('dataset')}: no labelled images"
    copies = f" ({metrics['perturb']} copies)" if metrics.get("perturb") else ""
    lines = [
        f"{metrics['version']} on {metrics['dataset']}{copies}: n={metrics['n']} "
        f"accuracy={metrics['accuracy']:.4f} roc_auc={fmt(metrics['roc_auc'])} "
        f"ece={metrics['ece']:.4f} brier={metrics['brier']:.4f}",
        _operating_point_line(metrics),
        f"{'class':<6} {'precision':>9} {'recall':>7} {'f1':>7}",
    ]
    for name in ("real", "fake"):
        row = metrics["per_class"][name]
        lines.append(f"{name:<6} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>7.3f}")
    matrix = metrics["confusion_matrix"]
    lines.append(f"confusion [[real→real, real→fake], [fake→real, fake→fake]] = {matrix}")
    return "\n".join(lines)


def _operating_point_line(metrics: dict) -> str:
    """The threshold, its ROC point, TPR at fixed FPRs and average precision, on one line."""
    point = metrics.get("operating_point") or {}
    rates = metrics.get("tpr_at_fpr") or {}
    at = " ".join(f"tpr@fpr{level}={fmt(value)}" for level, value in rates.items())
    return (
        f"threshold={fmt(metrics.get('threshold'))} fpr={fmt(point.get('fpr'))} "
        f"tpr={fmt(point.get('tpr'))} {at} "
        f"average_precision={fmt(metrics.get('average_precision'))}"
    )


def fmt(value) -> str:
    """A measurement to four decimals, or n/a."""
    return "n/a" if value is None else f"{value:.4f}"
