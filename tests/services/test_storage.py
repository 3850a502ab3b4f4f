"""The image store and the pixel cache: layout, atomic writes, row validation, rebuilding."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from model.images import resize_for_model
from tests.bad_inputs import image_bytes, write_files
from webapp.extensions import db
from webapp.models import Image
from webapp.services.evidence.jpeg_quality import estimate_quality
from webapp.services.importing.importer import import_path
from webapp.services.importing.pixel_cache import PixelCache
from webapp.services.importing.pixels import (
    CacheError,
    cache_for,
    ensure_cache,
    load_pixels,
    open_cache,
)
from webapp.services.storage import (
    blob_path,
    clean_stale_temporaries,
    instance_root,
    original_path,
    thumbnail_path,
    write_atomic,
)


def test_store_layout_is_content_addressed(app_ctx):
    sha = "ab" + "0" * 62
    assert blob_path(sha, "jpg") == instance_root() / "images" / "ab" / f"{sha}.jpg"
    assert thumbnail_path(sha) == instance_root() / "thumbnails" / "ab" / f"{sha}.jpg"


def test_write_atomic_leaves_no_partial_file(tmp_path):
    target = tmp_path / "store" / "x.bin"
    write_atomic(target, b"complete", tmp_path / "tmp")
    assert target.read_bytes() == b"complete"
    assert list((tmp_path / "tmp").iterdir()) == []
    with pytest.raises(TypeError):  # the write fails half-way
        write_atomic(tmp_path / "store" / "y.bin", object(), tmp_path / "tmp")
    assert not (tmp_path / "store" / "y.bin").exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_clean_stale_temporaries_keeps_live_writers(tmp_path):
    folder = tmp_path / "tmp"
    folder.mkdir()
    (folder / "999999999-dead.part").write_bytes(b"x")
    (folder / "junk").write_bytes(b"x")
    (folder / f"{os.getpid()}-live.part").write_bytes(b"x")
    assert clean_stale_temporaries(tmp_path) == 2
    assert [p.name for p in folder.iterdir()] == [f"{os.getpid()}-live.part"]


def test_pixel_cache_rows_are_valid_only_with_their_tag(tmp_path):
    cache = PixelCache(tmp_path, 4)
    rows = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    sha_a, sha_b, sha_c = ("a" * 64, "b" * 64, "c" * 64)
    assert not cache.valid([1, 7], [sha_a, sha_b]).any()
    cache.write([7, 1], [sha_b, sha_a], rows)
    assert cache.valid([1, 7, 3, 100], [sha_a, sha_b, sha_c, sha_c]).tolist() == [
        True,
        True,
        False,
        False,
    ]
    assert (cache.read([1, 7]) == rows[::-1]).all()
    # The same id for other content (a rolled-back id handed out again) is not valid.
    assert not cache.valid([1], [sha_c])[0]
    assert cache.array().shape == (8, 4, 4, 3)


def _import_pngs(tmp_path, count=20, size=(40, 30)):
    files = {f"real/{i}.png": image_bytes(i, "PNG", size=size) for i in range(count)}
    import_path(write_files(tmp_path / "in", files), dataset="pngs")
    images = db.session.scalars(select(Image).order_by(Image.id)).all()
    return files, images


def test_load_pixels_other_size_is_built_from_originals(app_ctx, tmp_path):
    files, images = _import_pngs(tmp_path)
    ids = [image.id for image in images][::-1]
    pixels = load_pixels(ids, 24)
    assert pixels.shape == (20, 24, 24, 3) and pixels.dtype == np.uint8
    for row, image in zip(pixels, images[::-1], strict=True):
        with PILImage.open(io.BytesIO(files[image.original_path])) as decoded:
            assert (row == resize_for_model(decoded, 24)).all()
    assert ensure_cache(ids, 24) == 0  # built once, kept
    assert open_cache(24).shape[1:] == (24, 24, 3)


def test_damaged_cache_rows_are_rebuilt(app, app_ctx, tmp_path):
    _files, images = _import_pngs(tmp_path, count=6)
    size = app.config["CACHE_SIZE"]
    ids = [image.id for image in images]
    good = load_pixels(ids, size)
    cache = cache_for(size)
    with open(cache.tags_file, "r+b") as tags:  # a torn write: one tag lost
        tags.seek(ids[2] * 8)
        tags.write(b"\x00" * 8)
    assert ensure_cache(ids, size) == 1
    assert (load_pixels(ids, size) == good).all()


def test_missing_original_is_a_clear_error(app_ctx, tmp_path):
    _files, images = _import_pngs(tmp_path, count=2)
    original_path(images[0]).unlink()
    with pytest.raises(CacheError, match="could not be decoded"):
        load_pixels([images[0].id], 20)
    with pytest.raises(KeyError, match="no image with id"):
        load_pixels([999_999], 20)


@pytest.mark.parametrize("quality", [5, 10, 25, 50, 75, 90, 95, 100])
def test_jpeg_quality_estimate_inverts_libjpeg(quality):
    with PILImage.open(io.BytesIO(image_bytes(1, quality=quality))) as image:
        assert estimate_quality(image.quantization) == quality
    with PILImage.open(io.BytesIO(image_bytes(1, quality=quality, mode="L"))) as grey:
        assert estimate_quality(grey.quantization) == quality


def test_jpeg_quality_estimate_of_custom_tables():
    flat = {0: [8] * 64, 1: [8] * 64}
    assert 50 < estimate_quality(flat) < 100
    assert estimate_quality({}) is None and estimate_quality(None) is None
