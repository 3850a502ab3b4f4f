"""Normalisation statistics of the training images: per-channel mean and standard deviation.

The pass is ``model.stats.channel_stats`` streamed over the pixel cache (exact integer sums, a
memory map read block by block); the result is stored in ChannelStats under a hash of the image
set and size, and reused, so a retrain on the same images never pays for it twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import select

from model.stats import channel_stats as streamed_channel_stats

from ...extensions import db
from ...models import ChannelStats, Dataset, DatasetImage, Image, Label, Split
from ..importing.pixels import cache_for, ensure_cache

CHEAP_CHANNEL_PASS_BYTES = 256 * 1024**2


def dataset_id(name: str | None) -> int | None:
    """The id of the dataset called ``name`` (None for None); LookupError if there is none."""
    if name is None:
        return None
    found = db.session.scalar(select(Dataset.id).where(Dataset.name == name))
    if found is None:
        raise LookupError(f"no dataset named {name!r}")
    return found


def training_image_ids(dataset_name: str | None = None) -> list[int]:
    """Labelled training-split images that no evaluation-only dataset holds."""
    evaluation_only = (
        select(DatasetImage.image_id)
        .join(Dataset, Dataset.id == DatasetImage.dataset_id)
        .where(Dataset.evaluation_only.is_(True))
    )
    statement = select(Image.id).where(
        Image.split == Split.TRAIN,
        Image.label.in_([Label.REAL, Label.FAKE]),
        Image.id.not_in(evaluation_only),
    )
    chosen = dataset_id(dataset_name)
    if chosen is not None:
        statement = statement.join(DatasetImage, DatasetImage.image_id == Image.id).where(
            DatasetImage.dataset_id == chosen
        )
    return list(db.session.scalars(statement.order_by(Image.id)))


def ids_key(image_ids: Sequence[int], size: int) -> str:
    """The key of an image set: a hash of the sorted ids and the size."""
    ids = sorted(set(int(i) for i in image_ids))
    return hashlib.sha256(f"{size}|{','.join(map(str, ids))}".encode()).hexdigest()


def stored_channel_stats(image_ids: Sequence[int], size: int) -> ChannelStats | None:
    """The stored statistics of exactly this set of images at this size, if any."""
    return db.session.scalar(
        select(ChannelStats)
        .where(
            ChannelStats.images_sha256 == ids_key(image_ids, size), ChannelStats.image_size == size
        )
        .order_by(ChannelStats.id.desc())
    )


def channel_stats(image_ids: Sequence[int], size: int) -> tuple[list[float], list[float]]:
    """Per-channel (R, G, B) mean and standard deviation in [0, 1] over ``image_ids`` at
    ``size``: ``model.stats.channel_stats`` streamed over the pixel cache (exact integer sums),
    stored and reused for the same set of images."""
    stored = stored_channel_stats(image_ids, size)
    if stored is not None:
        return list(stored.mean), list(stored.std)
    ids = sorted(set(int(i) for i in image_ids))
    if not ids:
        raise ValueError("channel statistics need at least one image")
    ensure_cache(ids, size)
    mean, std = streamed_channel_stats(cache_for(size).array(), rows=ids)
    row = ChannelStats(
        image_size=size,
        images_sha256=ids_key(ids, size),
        n_images=len(ids),
        mean=[float(m) for m in mean],
        std=[float(s) for s in std],
    )
    db.session.add(row)
    db.session.commit()
    return list(row.mean), list(row.std)


def channel_stats_entry(ids: list[int], size: int, compute: bool | None) -> dict | None:
    """The statistics of ``ids`` for the data audit: computed when ``compute`` (None: when the
    pass is cheap), else the stored ones or blanks."""
    if not ids:
        return None
    if compute is None:  # when it takes a moment only: a pass over at most this many bytes
        compute = len(ids) * size * size * 3 <= CHEAP_CHANNEL_PASS_BYTES
    if compute:
        mean, std = channel_stats(ids, size)
    else:
        stored = stored_channel_stats(ids, size)
        if stored is None:
            return {"n_images": len(ids), "size": size, "mean": None, "std": None}
        mean, std = stored.mean, stored.std
    return {"n_images": len(ids), "size": size, "mean": mean, "std": std}
