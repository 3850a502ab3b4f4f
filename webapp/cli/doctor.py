"""``flask doctor``: check the database against the image store and repair what is safe."""

from __future__ import annotations

import json
import sys

import click

from ..services.operations.doctor import machine_status, run_doctor, status_lines


@click.command(
    "doctor",
    help="Check the database against the image store and the instance folder; "
    "exit status 1 while problems remain.",
)
@click.option("--repair", is_flag=True, help="Fix what can be fixed without losing data.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def group(repair: bool, as_json: bool) -> None:
    doctor = run_doctor(repair=repair)
    remaining = doctor.remaining()
    status = machine_status()
    if as_json:
        findings = [finding.as_json() for finding in doctor.findings]
        payload = {"repair": repair, "findings": findings, "problems_remaining": remaining}
        click.echo(json.dumps({**payload, **status}, indent=2))
    else:
        for finding in doctor.findings:
            click.echo(finding.line())
        for line in status_lines(status):
            click.echo(line)
        repaired = sum(1 for finding in doctor.findings if finding.repaired)
        summary = f"doctor: {remaining} problem(s) remain"
        click.echo(summary + (f", {repaired} repaired" if repair else ""), err=True)
    sys.exit(1 if remaining else 0)
