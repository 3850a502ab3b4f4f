"""The data audit: distributions, IQR outliers, the shortcut audit, channel statistics."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from tests.bad_inputs import image_bytes, jpeg_with_exif, write_files
from webapp.extensions import db
from webapp.models import ChannelStats, Image
from webapp.services.importing.importer import import_path
from webapp.services.importing.pixels import cache_for, load_pixels
from webapp.services.training import data_audit, normalisation

N = 12


def import_classes(tmp_path, real: dict[str, bytes], fake: dict[str, bytes], name="audit"):
    files = {f"real/{k}": v for k, v in real.items()}
    files.update({f"fake/{k}": v for k, v in fake.items()})
    return import_path(write_files(tmp_path / name, files), dataset=name)


def warned_groups(name="audit") -> set[str]:
    return {f["group"] for f in data_audit.shortcut_findings(dataset_name=name) if f["warning"]}


def varied_size(seed: int) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    return int(rng.integers(40, 120)), int(rng.integers(40, 120))


def test_no_shortcut_when_classes_look_alike(app_ctx, tmp_path):
    real = {f"{i}.jpg": image_bytes(i, size=varied_size(i)) for i in range(N)}
    fake = {f"{i}.jpg": image_bytes(500 + i, size=varied_size(i + 1)) for i in range(N)}
    import_classes(tmp_path, real, fake)
    assert warned_groups() == set()
    assert data_audit.shortcut_warnings("audit") == []
    assert {f["group"] for f in data_audit.shortcut_findings(dataset_name="audit")} >= {
        "file format",
        "image size",
        "JPEG quality",
    }


def test_format_shortcut(app_ctx, tmp_path):
    real = {f"{i}.jpg": image_bytes(i) for i in range(N)}
    fake = {f"{i}.png": image_bytes(500 + i, "PNG") for i in range(N)}
    import_classes(tmp_path, real, fake)
    assert "file format" in warned_groups()
    assert "image size" not in warned_groups()
    (message,) = [w for w in data_audit.shortcut_warnings("audit") if w.startswith("file format")]
    assert "100%" in message and "fake: PNG 100%" in message


def test_fixed_size_fakes_are_a_size_shortcut(app_ctx, tmp_path):
    real = {f"{i}.jpg": image_bytes(i, size=varied_size(i)) for i in range(N)}
    fake = {f"{i}.jpg": image_bytes(500 + i, size=(64, 64)) for i in range(N)}
    import_classes(tmp_path, real, fake)
    assert "image size" in warned_groups()
    assert "file format" not in warned_groups()


def test_jpeg_quality_shortcut(app_ctx, tmp_path):
    real = {f"{i}.jpg": image_bytes(i, quality=95) for i in range(N)}
    fake = {f"{i}.jpg": image_bytes(500 + i, quality=60) for i in range(N)}
    import_classes(tmp_path, real, fake)
    assert warned_groups() == {"JPEG quality"}


def test_exif_and_colour_mode_shortcuts(app_ctx, tmp_path):
    real = {f"{i}.jpg": jpeg_with_exif(i) for i in range(N)}
    fake = {f"{i}.jpg": image_bytes(500 + i, quality=92, mode="L") for i in range(N)}
    import_classes(tmp_path, real, fake)
    assert {"EXIF presence", "colour mode"} <= warned_groups()


def test_too_few_labelled_images_give_no_verdict(app_ctx, tmp_path):
    import_classes(tmp_path, {"a.jpg": image_bytes(1)}, {"b.png": image_bytes(2, "PNG")})
    assert data_audit.shortcut_findings(dataset_name="audit") == []


def test_distributions_and_iqr_area_outliers(app_ctx, tmp_path):
    real = {f"{i}.jpg": image_bytes(i, size=(40, 40)) for i in range(18)}
    real.update({f"big{i}.jpg": image_bytes(90 + i, size=(200, 150)) for i in range(2)})
    fake = {f"{i}.png": image_bytes(500 + i, "PNG", size=(40, 40)) for i in range(10)}
    import_classes(tmp_path, real, fake)
    stats = data_audit.dataset_stats("audit")
    assert stats["classes"] == {"real": 20, "fake": 10}
    outliers = stats["area_outliers"]
    assert (outliers["count"], outliers["high"]) == (2, 1600.0)
    assert outliers["by_class"]["real"] == {"count": 2, "fraction": 0.1}
    assert outliers["by_class"]["fake"]["count"] == 0
    width = stats["numeric"]["width"]
    assert width["summary"]["real"]["max"] == 200 and width["summary"]["fake"]["median"] == 40
    assert sum(width["histogram"]["counts"]["real"]) == 20
    assert stats["categorical"]["format"]["fake"] == {"JPEG": 0, "PNG": 10}
    assert stats["categorical"]["exif"]["real"] == {"no": 20}
    quality = stats["numeric"]["jpeg_quality"]["summary"]
    assert quality["real"]["median"] == 90 and quality["fake"] is None
    assert sum(sum(v.values()) for v in stats["splits"].values()) == 30
    with pytest.raises(LookupError):
        data_audit.dataset_stats("no such dataset")


def test_channel_stats_are_exact_stored_and_reused(app, app_ctx, tmp_path):
    real = {f"{i}.png": image_bytes(i, "PNG", size=(30 + i, 20)) for i in range(N)}
    import_classes(tmp_path, real, {})
    size = app.config["CACHE_SIZE"]
    ids = db.session.scalars(select(Image.id)).all()
    pixels = load_pixels(ids, size).reshape(-1, 3) / 255.0
    mean, std = normalisation.channel_stats(ids, size)
    assert np.allclose(mean, pixels.mean(axis=0), atol=1e-12)
    assert np.allclose(std, pixels.std(axis=0), atol=1e-12)
    # A second call reads the stored row: changing the cache's pixels changes nothing.
    cache = cache_for(size)
    with open(cache.pixels_file, "r+b") as handle:
        handle.seek(ids[0] * cache.row_bytes)
        handle.write(b"\xff" * cache.row_bytes)
    assert normalisation.channel_stats(list(reversed(ids)), size) == (mean, std)
    assert db.session.scalar(select(func.count(ChannelStats.id))) == 1
    normalisation.channel_stats(ids[:3], size)
    assert db.session.scalar(select(func.count(ChannelStats.id))) == 2
    with pytest.raises(ValueError):
        normalisation.channel_stats([], size)


def test_training_ids_exclude_evaluation_and_unlabelled(app_ctx, tmp_path):
    train = {f"real/{i}.jpg": image_bytes(i) for i in range(30)}
    train.update({f"loose/{i}.jpg": image_bytes(100 + i) for i in range(5)})
    import_path(write_files(tmp_path / "t", train), dataset="t")
    bench = {f"fake/{i}.jpg": image_bytes(i) for i in range(3)}  # 3 of the training images
    import_path(write_files(tmp_path / "b", bench), dataset="b", evaluation_only=True)
    ids = set(normalisation.training_image_ids())
    images = db.session.scalars(select(Image)).all()
    benchmark = {i.sha256 for i in images if i.original_path.startswith("fake/")}
    benchmark |= {
        i.sha256 for i in images if i.original_path in {f"real/{k}.jpg" for k in range(3)}
    }
    expected = {
        i.id
        for i in images
        if i.split == "train" and i.label == "real" and i.sha256 not in benchmark
    }
    assert ids == expected and len(ids) > 10
    stats = data_audit.dataset_stats("t", with_channel_stats=True)
    assert stats["channel_stats"]["n_images"] == len(normalisation.training_image_ids("t"))
    assert len(stats["channel_stats"]["mean"]) == 3
