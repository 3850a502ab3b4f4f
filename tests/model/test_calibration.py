"""Temperature scaling lowers NLL on an over-confident model and never changes a verdict."""

import numpy as np
import pytest

from model.calibration import apply_temperature, fit_temperature, negative_log_likelihood


def overconfident_logits(count=400, seed=0):
    """A classifier right about 80% of the time whose logits are ten times too large."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    margin = rng.normal(1.2, 1.0, count)  # positive: the right class wins
    signed = np.where(labels == 1, margin, -margin)
    logits = np.stack([-signed, signed], axis=1) * 10
    return logits, labels


def test_temperature_lowers_nll_of_an_overconfident_model():
    logits, labels = overconfident_logits()
    temperature = fit_temperature(logits, labels)
    assert temperature > 3
    before = negative_log_likelihood(logits, labels)
    after = negative_log_likelihood(logits, labels, temperature)
    assert after < before * 0.5


def test_underconfident_model_gets_a_temperature_below_one():
    logits, labels = overconfident_logits()
    assert fit_temperature(logits / 100, labels) < 1


def test_temperature_keeps_every_verdict():
    logits, labels = overconfident_logits()
    raw = apply_temperature(logits, 1.0)
    calibrated = apply_temperature(logits, fit_temperature(logits, labels))
    assert np.array_equal(raw >= 0.5, calibrated >= 0.5)
    assert raw == pytest.approx(np.exp(logits[:, 1]) / np.exp(logits).sum(1))


def test_nothing_to_fit_gives_one():
    assert fit_temperature(np.zeros((0, 2)), np.zeros(0)) == 1.0
    assert fit_temperature(np.ones((3, 2)), np.ones(3)) == 1.0
