"""Engine and training-precision choice by measurement (``model.tuning``).

These tests check what is chosen and why, never how fast anything was: a candidate that
disagrees with eager fp32 or cannot run is never chosen, whatever its speed.
"""

from __future__ import annotations

import json

import pytest

from model import tuning
from model.tuning import (
    TOLERANCES,
    Tolerance,
    TuningResult,
    choose_training_variant,
    tune,
    tune_training,
)


@pytest.fixture(scope="module")
def meta(tiny_run):
    return tiny_run.checkpoint_meta()


def quick_tune(model, meta, **overrides):
    """A small measurement: two batch sizes, one batch each, one timed pass."""
    options = {
        "engines": ("fused", "jit"),
        "batch_sizes": (4, 8),
        "batches": 1,
        "repeats": 1,
        **overrides,
    }
    return tune(model, meta, "cpu", **options)


def test_tuning_measures_every_candidate_and_keeps_the_fastest_that_agrees(tiny_run, meta):
    lines = []
    result = quick_tune(tiny_run.model, meta, log=lines.append)
    measured = {(m.engine, m.precision, m.batch_size) for m in result.measurements}
    # fused at both batch sizes per precision, jit at the fused winner's batch size
    assert {(e, p) for e, p, _ in measured} == {
        ("fused", "fp32"),
        ("fused", "bf16"),
        ("jit", "fp32"),
        ("jit", "bf16"),
    }
    assert {b for e, _, b in measured if e == "fused"} == {4, 8}
    usable = [m for m in result.measurements if m.usable]
    fastest = max(usable, key=lambda m: m.images_per_second)
    assert (result.engine, result.precision, result.batch_size) == (
        fastest.engine,
        fastest.precision,
        fastest.batch_size,
    )
    assert result.baseline_images_per_second > 0
    assert result.speedup == pytest.approx(
        fastest.images_per_second / result.baseline_images_per_second
    )
    assert result.image_size == meta["image_size"] and result.fingerprint["device"] == "cpu"
    assert lines[0].startswith("eager fp32 (baseline)") and len(lines) == 1 + len(measured)


def test_a_candidate_outside_its_tolerance_is_never_chosen(tiny_run, meta, monkeypatch):
    """With a zero bf16 tolerance every bf16 candidate disagrees: the choice is fp32."""
    monkeypatch.setitem(TOLERANCES, "bf16", Tolerance(0.0, 0.0, 0.0))
    result = quick_tune(tiny_run.model, meta)
    bf16 = [m for m in result.measurements if m.precision == "bf16"]
    assert bf16 and not any(m.agrees for m in bf16)
    assert result.precision == "fp32"


def test_an_engine_that_cannot_run_is_recorded_and_not_chosen(tiny_run, meta):
    """fp16 autocast is refused on a CPU: its candidates fail with the reason, fp32 wins."""
    result = quick_tune(tiny_run.model, meta, precisions=("fp16", "fp32"))
    failed = [m for m in result.measurements if m.precision == "fp16"]
    assert failed and all(m.error and "fp16" in m.error for m in failed)
    assert result.precision == "fp32"


def test_when_nothing_agrees_the_network_runs_as_trained(tiny_run, meta, monkeypatch):
    monkeypatch.setitem(TOLERANCES, "fp32", Tolerance(-1.0, 0.0, -1.0))
    result = quick_tune(tiny_run.model, meta, precisions=("fp32",))
    assert (result.engine, result.precision) == ("eager", "fp32")


def test_a_result_survives_json(tiny_run, meta):
    result = quick_tune(tiny_run.model, meta, engines=("fused",), precisions=("fp32",))
    again = TuningResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    assert again.to_dict()["speedup"] == round(result.speedup, 3)


def test_the_fingerprint_names_the_processor_threads_and_torch(monkeypatch):
    import torch

    fingerprint = tuning.machine_fingerprint(torch.device("cpu"))
    assert fingerprint["torch"] == torch.__version__
    assert fingerprint["threads"] == torch.get_num_threads()
    assert set(fingerprint["flags"]) <= {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


def test_a_variant_must_clearly_beat_plain_fp32_to_be_chosen():
    assert choose_training_variant({"fp32": 100.0, "bf16": 104.0}) == "fp32"  # within the noise
    assert choose_training_variant({"fp32": 100.0, "bf16": 120.0}) == "bf16"
    close = {"fp32": 100.0, "fp32 + small-conv grad": 103.0, "bf16": 90.0}
    assert choose_training_variant(close) == "fp32"
    assert choose_training_variant({"bf16": 50.0}) == "bf16"  # fp32 failed: the one that ran
    assert choose_training_variant({}) == "fp32"


@pytest.mark.parametrize(
    ("size", "stem", "variants"),
    [(32, "imagenet", 4), (96, "imagenet", 2), (32, "medium", 4), (64, "medium", 2)],
)
def test_training_precision_is_measured_with_small_conv_only_where_it_applies(size, stem, variants):
    """The small-conv gradient is tried where the last stage is at most 2x2: up to 64 px for
    the usual stem, 32 px for the medium one (half its stride)."""
    lines = []
    choice = tune_training(size, 4, "cpu", steps=1, rounds=2, log=lines.append, stem=stem)
    assert len(choice["rates"]) == variants and len(lines) == variants
    assert choice["stem"] == stem and choice["residual"] == "none"
    assert all(("stem medium" in line) == (stem == "medium") for line in lines)
    assert choice["precision"] in {"fp32", "bf16"}
    best = choose_training_variant(choice["rates"])
    assert choice["images_per_second"] == choice["rates"][best]
    assert choice["small_conv_grad"] == ("small-conv" in best)
    if variants == 2:
        assert not choice["small_conv_grad"]
