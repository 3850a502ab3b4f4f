"""Training in several processes: torchrun runs ``model.distributed`` (DistributedDataParallel).

The job exports the training set it selected (pixels from the cache, labels, normalisation and
configuration; see ``model.trainset_file``) to a folder in the instance, starts
``torchrun --standalone --nproc-per-node N -m model.distributed`` in its own process group,
turns rank 0's progress lines into the job's progress, and returns the checkpoint rank 0 wrote,
which ``training.register_checkpoint`` registers exactly as a single-process one. Cancelling the
job stops torchrun and its ranks; a rank that fails fails the job with that rank's error.

The same export is what ``flask model export-trainset`` writes for training by hand on several
machines; ``flask model register`` registers the checkpoint that comes back.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
from flask import current_app

import model
from model.checkpoint import load_checkpoint
from model.config import TrainConfig
from model.distributed import ERROR_PREFIX, PROGRESS_PREFIX, error_file
from model.trainset_file import (
    NativeImagesWriter,
    images_for_writing,
    load_trainset,
    save_trainset_info,
)

from ..importing.pixels import cache_for, ensure_cache, native_images
from .progress import Throttle
from .trainset import LabelledSplit, TrainingSet, select_training_set

EXPORT_CHUNK = 512  # images copied from the cache per step of an export
DESK_FILE = "desk.json"  # what the desk adds to an export: the datasets it was selected from
STOP_GRACE_S = 20.0  # how long torchrun gets to stop its ranks before they are killed


def check_distributable(config: TrainConfig, trainset: TrainingSet, nproc: int) -> None:
    """Refuse, before anything is exported, a run that cannot be split over ``nproc``."""
    if nproc < 2:
        raise ValueError("distributed training needs at least 2 processes")
    if config.batch_size % nproc:
        raise ValueError(
            f"batch size {config.batch_size} does not split evenly over {nproc} processes: "
            "choose a process count that divides it"
        )
    if len(trainset.train) < nproc:
        raise ValueError(f"{len(trainset.train)} training images cannot feed {nproc} processes")


def export_trainset(folder, trainset: TrainingSet, config: TrainConfig, mean, std) -> Path:
    """Write ``trainset``'s train and val images, labels and ids, and ``config``, to ``folder``:
    the pixel cache at the run's size, or for a run on crops each original decoded at the
    scale its crops are taken from (``model.trainset_file``)."""
    folder = Path(folder)
    size = config.image_size
    for split, part in (("train", trainset.train), ("val", trainset.val)):
        ids, _ = part.as_arrays()
        if config.input_mode == "crops":
            originals = native_images(ids, config.input_settings())
            with NativeImagesWriter(folder, split) as writer:
                for index in range(len(originals)):
                    writer.add(originals[index])
        else:
            ensure_cache(ids, size)
            cache = cache_for(size)
            pixels = images_for_writing(folder, split, len(ids), size)
            for start in range(0, len(ids), EXPORT_CHUNK):
                chunk = ids[start : start + EXPORT_CHUNK]
                pixels[start : start + EXPORT_CHUNK] = cache.read(chunk)
            pixels.flush()
            del pixels
        np.save(folder / f"{split}_ids.npy", ids)
    save_trainset_info(
        folder,
        trainset.train.labels,
        trainset.val.labels,
        config,
        mean,
        std,
        train_set_sha256=trainset.sha256(),
        meta={"label_counts": trainset.label_counts()},
    )
    (folder / DESK_FILE).write_text(json.dumps({"datasets": trainset.datasets}))
    return folder


def trainset_from_export(folder) -> TrainingSet:
    """The ``TrainingSet`` an export holds (its test split: the desk's current one)."""
    folder = Path(folder)
    exported = load_trainset(folder)  # validates the folder, with a clear message
    try:
        datasets = json.loads((folder / DESK_FILE).read_text())["datasets"]
        ids = {split: np.load(folder / f"{split}_ids.npy") for split in ("train", "val")}
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{folder} was not exported by this desk: {error}") from error
    parts = {}
    for split, labels in (("train", exported.train_labels), ("val", exported.val_labels)):
        parts[split] = LabelledSplit(ids[split].tolist(), labels.tolist())
    current = select_training_set(datasets or None)
    trainset = TrainingSet(parts["train"], parts["val"], current.test, list(datasets))
    if trainset.sha256() != exported.train_set_sha256:
        raise ValueError(f"{folder}: its ids and labels do not match its fingerprint")
    return trainset


def train_distributed(context, trainset: TrainingSet, config: TrainConfig, mean, std, nproc):
    """Train with ``nproc`` torchrun processes; returns the network and checkpoint meta."""
    check_distributable(config, trainset, nproc)
    folder = Path(current_app.instance_path) / "distributed" / f"job-{context.job_id}"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        context.progress(stage="exporting")
        export_trainset(folder, trainset, config, mean, std)
        context.log(f"exported {len(trainset.train)} + {len(trainset.val)} images to {folder}")
        checkpoint = Torchrun(folder, nproc, context).run()
        return load_checkpoint(checkpoint)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def torchrun_command(folder: Path, nproc: int, checkpoint: Path) -> list[str]:
    """torchrun on this machine, on a free port it picks itself (``--standalone``)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "model.distributed",
        "--data",
        str(folder),
        "--out",
        str(checkpoint),
    ]


class Torchrun:
    """One torchrun subprocess: started, followed line by line, stopped on cancel."""

    def __init__(self, folder: Path, nproc: int, context) -> None:
        self.folder, self.nproc, self.context = folder, nproc, context
        self.checkpoint = folder / "checkpoint.pt"
        self.lines: queue.Queue = queue.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.rank_errors: list[dict] = []
        self.rank_pids: list[int] = []
        self.done: dict | None = None
        self.throttle = Throttle(context.progress)

    def run(self) -> Path:
        """Run to the end; returns the checkpoint, raises JobCancelled or RuntimeError."""
        self.process = self._start()
        readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            self._follow()
        finally:
            if self.process.poll() is None:  # cancelled, or something failed here
                self.stop()
            code = self.process.wait()
            for reader in readers:
                reader.join(timeout=10)
            self.process.stdout.close()
            self.process.stderr.close()
        if code != 0 or self.done is None or not self.checkpoint.is_file():
            raise RuntimeError(f"distributed training failed: {self._failure(code)}")
        return self.checkpoint

    def _start(self) -> subprocess.Popen:
        root = str(Path(model.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        # torchrun would pin every rank to one thread; share this machine's cores instead.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.nproc)))
        command = torchrun_command(self.folder, self.nproc, self.checkpoint)
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # its own process group, so a cancel can stop it whole
        )
        self.context.log(f"torchrun (pid {process.pid}): {' '.join(command[1:])}")
        return process

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            # Ranks and torchrun share this pipe: another process's unfinished line may precede
            # the report, so look for it anywhere in the line.
            if (start := line.find(ERROR_PREFIX)) >= 0:
                with contextlib.suppress(ValueError):  # a torn line: the files still tell
                    self.rank_errors.append(json.loads(line[start + len(ERROR_PREFIX) :]))
            self.stderr_tail.append(line.rstrip())

    def _follow(self) -> None:
        """Turn progress lines into job progress until stdout closes; notice a cancel."""
        while True:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                line = ""
            if line is None:
                return
            if line.startswith(PROGRESS_PREFIX):
                self._event(json.loads(line[len(PROGRESS_PREFIX) :]))
            self.context.check_cancelled()

    def _event(self, event: dict[str, Any]) -> None:
        phase = event.get("phase")
        if phase == "start":
            self.rank_pids = list(event.get("pids") or [])
            pids = {"torchrun": self.process.pid, "ranks": self.rank_pids}
            self.context.progress(stage="training", processes=event["world_size"], pids=pids)
            self.context.log(
                f"{event['world_size']} processes ({event['backend']} on {event['device']}), "
                f"pids {self.rank_pids}"
            )
        elif phase == "done":
            self.done = event
            self.context.log(f"rank 0 wrote {event['checkpoint']}; ranks agree on the weights")
        elif phase in {"train", "epoch"}:
            self.throttle(event)

    def stop(self) -> None:
        """Stop torchrun (it stops its ranks); kill whatever is left after the grace period."""
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid in self.rank_pids:  # each rank leads its own process group (torchrun's doing)
            _signal_group(pid, signal.SIGKILL)

    def _failure(self, code: int) -> str:
        errors = self.rank_errors or self._error_files()
        if errors:
            first = errors[0]
            return f"rank {first.get('rank')} failed: {first.get('error')}"
        tail = "\n".join(self.stderr_tail) or "no output"
        return f"torchrun exited with status {code}:\n{tail}"

    def _error_files(self) -> list[dict]:
        """The reports the failed ranks wrote beside the checkpoint, lowest rank first."""
        reports = []
        for rank in range(self.nproc):
            with contextlib.suppress(OSError, ValueError):
                reports.append(json.loads(error_file(self.checkpoint, rank).read_text()))
        return reports


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pid, signum)
