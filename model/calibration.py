"""Temperature scaling (Guo et al., 2017): one scalar T fitted on validation logits.

Dividing the logits by T > 1 softens over-confident probabilities without changing any verdict
(the arg-max is unchanged), so the review queue's thresholds refer to honest probabilities.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def negative_log_likelihood(logits, labels, temperature: float = 1.0) -> float:
    """Mean NLL of ``labels`` under ``softmax(logits / temperature)``."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    log_probs = _log_softmax(logits / temperature)
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def fit_temperature(logits, labels) -> float:
    """The temperature minimising validation NLL, searched on log T in [0.05, 20].

    Returns 1.0 (no change) when there is nothing to fit: no images or a single class.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0 or len(np.unique(labels)) < 2:
        return 1.0
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """Calibrated p_fake: ``softmax(logits / T)[:, 1]`` as float64."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(_log_softmax(logits / float(temperature))[:, 1])
