"""Which machine this is, as far as measured speeds depend on it: processor, vector units,
threads, PyTorch build and accelerator. A stored measurement is reused only on the machine
that made it (``model.tuning``), and reports name the CPU they ran on.
"""

from __future__ import annotations

import os
import platform

import torch


def machine_fingerprint(device: torch.device) -> dict:
    """What a measurement depends on: processor, vector units, threads, PyTorch build."""
    flags = _cpu_flags()
    fingerprint = {
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device.type,
    }
    if device.type == "cuda":
        fingerprint["gpu"] = torch.cuda.get_device_name(device)
    return fingerprint


def _cpu_lines() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return handle.read().splitlines()
    except OSError:
        return []


def _cpu_model() -> str:
    for line in _cpu_lines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return ""


def _cpu_flags() -> set[str]:
    for line in _cpu_lines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_description() -> str:
    """``lscpu``'s model name and the vector units that decide the fast paths, for reports."""
    flags = sorted(_cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{_cpu_model() or platform.machine()} ({', '.join(flags) or 'no AVX2'}; {cores} cores)"
