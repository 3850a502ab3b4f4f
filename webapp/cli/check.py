"""``flask check FILE... [--json]``: check images from the command line, as the Check page does.

Each file is stored in the ``checks`` dataset and scored in this process (no worker needed), then
its verdict and evidence are printed; with ``--json`` the check JSON of the API (one object for
one file, a list for several). The exit status is 1 when any file was refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask import current_app

from ..services import checking

ORDER = ("model", "similar", "credentials", "metadata", "watermark", "phash")


def _check_file(path: Path) -> dict:
    """Store, score and describe one file; raises CheckError when it is refused."""
    from ..services.checking.job import run_check

    check = checking.create(path.read_bytes(), path.name, user_id=None)
    run_check(check.id)
    return checking.to_json(checking.wait(check, timeout=0))


def _print_text(result: dict) -> None:
    p_fake = "" if result["p_fake"] is None else f" p(fake)={result['p_fake']:.3f}"
    click.echo(f"{result['file_name']}: {result['verdict'].upper()}{p_fake} ({result['version']})")
    for kind in ORDER:
        item = result["evidence"].get(kind)
        if item:
            click.echo(f"  {checking.TITLES[kind]}: [{item['weight']}] {item['summary']}")
    click.echo(f"  {result['url']}")


@click.command("check", help="Check images: verdict of the active model and the evidence.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the check JSON of the API.")
def group(files: tuple[str, ...], as_json: bool) -> None:
    results, refused = [], 0
    with current_app.test_request_context("/"):
        for name in files:
            try:
                result = _check_file(Path(name))
            except checking.CheckError as error:
                refused += 1
                click.echo(f"{name}: refused: {error}", err=True)
                continue
            results.append(result)
            if not as_json:
                _print_text(result)
    if as_json:
        click.echo(json.dumps(results[0] if len(files) == 1 and results else results, indent=2))
    if refused:
        raise SystemExit(1)
