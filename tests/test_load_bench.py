"""The load benchmark in a tiny configuration: real gunicorn workers, real reviewer sessions, and
its own checks must pass (timings are printed, never asserted). Its checks must also be able to
fail: fed a lost and an invented decision, they say so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.load_bench import Shared, run_checks
from tests.factories import decide, make_scored_image, make_version
from tests.helpers import make_user
from webapp.services.review import decisions

ROOT = Path(__file__).resolve().parent.parent


def test_tiny_load_run_passes_its_checks():
    command = [
        sys.executable,
        str(ROOT / "bench" / "load_bench.py"),
        *("--decisions", "60", "--reviewers", "2", "--workers", "2", "--seconds", "600"),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    output = result.stdout
    assert result.returncode == 0, output + result.stderr[-3000:]
    assert "result: all checks passed" in output
    assert "reviewing (done): 60 decisions" in output
    assert "FAIL" not in output
    for endpoint in ("claim", "decide", "release"):
        assert f"\n{endpoint} " in output  # a latency row per endpoint


def test_checks_catch_lost_and_invented_decisions(app_ctx):
    version = make_version("v1")
    images = [make_scored_image(version, 0.5, label="real") for _ in range(3)]
    rita = decisions.Viewer.of(make_user("reviewer1"))
    decided = [decide(rita, image.id, "fake").decision for image in images]
    shared = Shared(target=3, deadline=0)
    for decision in decided[:2]:  # the third row was never acknowledged: "extra"
        shared.acked[decision["id"]] = {
            "image_id": decision["image_id"],
            "choice": "fake",
            "reverts_id": None,
            "user": "reviewer1",
        }
    shared.acked[9999] = {"image_id": 1, "choice": "real", "reverts_id": None, "user": "reviewer1"}
    results = {text.split(":")[0]: passed for passed, text in run_checks(shared)}
    assert results["decision rows no client was told about"] is False
    lost = next(key for key in results if key.startswith("acknowledged decisions"))
    assert results[lost] is False
    assert results["server errors (5xx or dropped connections)"] is True
