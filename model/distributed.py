"""Distributed training, one process per rank, launched by torchrun.

On one machine with two processes::

    torchrun --standalone --nproc-per-node 2 -m model.distributed --data TRAINSET --out ckpt.pt

``TRAINSET`` is a folder written by ``model.trainset_file`` (the web app's
``flask model export-trainset`` writes one); across machines, every machine holds a copy and
runs the same command with ``--nnodes``, ``--node-rank`` and ``--rdzv-endpoint`` instead of
``--standalone`` (see the README). The backend follows the device: NCCL on CUDA (one GPU per
process), gloo on CPU. Every rank trains its share of each global batch with the same
``TrainConfig``; rank 0 validates, fits the temperature and writes the checkpoint, in the same
format and with the same metadata keys as single-process training. Run without torchrun, the
module trains in this one process.

Rank 0 prints one JSON event per line on stdout after ``PROGRESS_PREFIX`` (the training loop's
progress dicts, then ``{"phase": "done", ...}``); a rank that fails prints ``ERROR_PREFIX`` and a
JSON ``{"rank", "error"}`` on stderr before it exits non-zero, and writes the same JSON to
``rank-N-error.json`` beside ``--out`` (see ``error_file``), so a launcher can tell the user which
rank failed and why even when other processes' output tore the line on the shared stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from model.checkpoint import plain_meta, save_checkpoint
from model.device import pick_device
from model.parallel import DistributedContext, state_sha256
from model.train import TrainResult, train
from model.trainset_file import Trainset, load_trainset

PROGRESS_PREFIX = "REALFAKE-PROGRESS "
ERROR_PREFIX = "REALFAKE-ERROR "


def parse_args(argv=None) -> argparse.Namespace:
    """The command line: the training-set folder, the checkpoint path and a few overrides."""
    parser = argparse.ArgumentParser(
        prog="python -m model.distributed",
        description="Train on an exported training set, one process per torchrun rank.",
    )
    parser.add_argument("--data", required=True, help="training-set folder (trainset.json)")
    parser.add_argument("--out", required=True, help="where rank 0 writes the checkpoint")
    parser.add_argument("--device", help="cpu or cuda (default: the exported configuration's)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the exported configuration's)")
    parser.add_argument(
        "--timeout-minutes",
        type=float,
        default=30.0,
        help="how long a rank waits for the others in a collective before failing",
    )
    return parser.parse_args(argv)


def emit(event: dict) -> None:
    """One progress event on stdout, for whoever launched torchrun."""
    print(PROGRESS_PREFIX + json.dumps(plain_meta(event)), flush=True)


def rank_device(preference: str, local_rank: int) -> torch.device:
    """This rank's device: its own GPU (``cuda:LOCAL_RANK``) or the CPU."""
    device = pick_device(preference)
    if device.type == "mps":
        raise ValueError("distributed training runs on CPU (gloo) or CUDA (NCCL), not on mps")
    if device.type != "cuda":
        return device
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local_processes > torch.cuda.device_count():
        raise ValueError(
            f"{local_processes} processes on this machine but {torch.cuda.device_count()} CUDA "
            "GPU(s): NCCL needs one GPU per process (fewer processes, or --device cpu)"
        )
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def main(argv=None) -> int:
    """Train on the folder of ``--data`` and write the checkpoint to ``--out`` (rank 0)."""
    args = parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    try:
        trainset = load_trainset(args.data)
        overrides = {"device": args.device, "epochs": args.epochs}
        config = replace(trainset.config, **{k: v for k, v in overrides.items() if v is not None})
        if "RANK" not in os.environ:
            return _single_process(trainset, config, args.out)
        device = rank_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend,
            timeout=timedelta(minutes=args.timeout_minutes),
            device_id=device if device.type == "cuda" else None,
        )
        try:
            context = DistributedContext.from_environment(device, backend)
            _train_rank(context, trainset, config, args.out)
        finally:
            dist.destroy_process_group()
    except Exception as error:
        report = {"rank": rank, "error": f"{type(error).__name__}: {error}"}
        print(ERROR_PREFIX + json.dumps(report), file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):  # the stderr line above still tells
            error_file(args.out, rank).write_text(json.dumps(report))
        raise
    return 0


def error_file(out: str | Path, rank: int) -> Path:
    """Where rank ``rank`` writes its error report: beside the checkpoint ``out``."""
    return Path(out).with_name(f"rank-{rank}-error.json")


def _train_rank(context: DistributedContext, trainset: Trainset, config, out: str) -> None:
    """One rank's run; rank 0 checks that all ranks agree and writes the checkpoint."""
    pids = context.gather(os.getpid())
    if context.is_main:
        emit(
            {
                "phase": "start",
                "world_size": context.world_size,
                "backend": context.backend,
                "device": str(context.device),
                "pids": pids,
            }
        )
    result = _train(trainset, config, context)
    digests = context.gather(state_sha256(result.model))
    if context.is_main:
        if len(set(digests)) != 1:
            raise RuntimeError(f"the ranks ended with different weights: {digests}")
        _save(result, trainset, out, weights_sha256=digests)


def _train(trainset: Trainset, config, context: DistributedContext | None) -> TrainResult:
    return train(
        trainset.train_images,
        trainset.train_labels,
        trainset.val_images,
        trainset.val_labels,
        config,
        trainset.mean,
        trainset.std,
        on_progress=emit,
        distributed=context,
    )


def _single_process(trainset: Trainset, config, out: str) -> int:
    result = _train(trainset, config, None)
    _save(result, trainset, out, weights_sha256=[state_sha256(result.model)])
    return 0


def _save(result: TrainResult, trainset: Trainset, out: str, weights_sha256: list[str]) -> None:
    meta = result.checkpoint_meta(train_set_sha256=trainset.train_set_sha256, **trainset.meta)
    path = save_checkpoint(out, result.model, meta)
    emit(
        {
            "phase": "done",
            "checkpoint": str(path),
            "weights_sha256": weights_sha256,
            "temperature": result.temperature,
            "val_metrics": result.val_metrics,
            "policy": result.policy,
        }
    )


if __name__ == "__main__":
    # ``record`` hands a failing rank's traceback to torchrun for its summary.
    sys.exit(record(main)())
