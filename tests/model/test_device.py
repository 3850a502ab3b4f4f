"""Device choice and the precision policy (bf16 only where the CPU makes it fast)."""

import pytest
import torch

from model.device import cpu_has_fast_bf16, pick_device, precision_policy


def test_pick_device_auto_prefers_an_accelerator_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else None
    device = pick_device("auto")
    if expected:
        assert device.type == expected
    else:
        assert device.type in {"mps", "cpu"}
    assert pick_device("cpu") == torch.device("cpu")


def test_pick_device_rejects_unknown_and_unavailable_names():
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            pick_device("cuda")


def test_cpu_auto_policy_is_fp32_whatever_the_cpu_flags_say(monkeypatch):
    """bf16 on a CPU is chosen by measurement (model.tuning), never by a flag: auto is fp32
    both on an AVX2-only CPU and on one with AMX (this test runs on either)."""
    monkeypatch.delenv("REALFAKE_PRECISION", raising=False)
    policy = precision_policy("cpu")
    assert policy.autocast_dtype is None, f"fast bf16 units: {cpu_has_fast_bf16()}"
    assert policy.channels_last


@pytest.mark.parametrize(("value", "dtype"), [("fp32", None), ("bf16", torch.bfloat16)])
def test_environment_overrides_precision(monkeypatch, value, dtype):
    monkeypatch.setenv("REALFAKE_PRECISION", value)
    assert precision_policy("cpu").autocast_dtype == dtype
    assert precision_policy("cpu", "fp32").autocast_dtype is None  # an argument wins


def test_bad_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown precision"):
        precision_policy("cpu", "int4")
    with pytest.raises(ValueError, match="only supported on CUDA"):
        precision_policy("cpu", "fp16")
