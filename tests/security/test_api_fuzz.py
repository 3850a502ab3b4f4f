"""The API fuzzer in the suite: Schemathesis generates requests from /api/v1/openapi.json for
every operation, valid ones and invalid ones, under an admin's and a reviewer's bearer token,
and fails on a server error, a status code or body the document does not describe, or an
invalid request the API accepted. Bounded: a few examples per operation, a fixed seed (the
README names the long run)."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

EXAMPLES = int(os.environ.get("REALFAKE_FUZZ_EXAMPLES", "3"))
SKIPPED = {"/api/v1/docs"}  # an HTML page
# A schema-valid upload is any bytes; almost none are an image, and those are rightly refused
# (422), so "valid data is accepted" cannot hold there. Every other check still runs on it.
NOT_ACCEPTANCE_CHECKED = {("POST", "/api/v1/checks")}


def failures_for(app, secret: str, mode: GenerationMode) -> list[str]:
    """Run every operation's examples; the failures as readable lines."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    found: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in SKIPPED:
            continue
        excluded = []
        if (operation.method.upper(), operation.path) in NOT_ACCEPTANCE_CHECKED:
            excluded = [positive_data_acceptance]

        @seed(20261201)
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            case.call_and_validate(
                headers={"Authorization": f"Bearer {secret}"},
                excluded_checks=excluded,  # noqa: B023  (run() is called in this iteration)
            )

        try:
            run()
        except BaseException as error:  # failed checks arrive as an exception group
            if isinstance(error, KeyboardInterrupt):
                raise
            found.append(f"{operation.method.upper()} {operation.path}: {str(error)[:1500]}")
    return found


@pytest.mark.parametrize("who", ["admin", "reviewer"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_fuzzer_finds_nothing(app, desk, who, mode):
    secret = desk.admin_secret if who == "admin" else desk.reviewer_secret
    failures = failures_for(app, secret, mode)
    assert failures == [], "\n\n".join(failures)
