"""The demo dataset: layout, truth in the manifest, determinism and no shortcut between classes.

The builds here are small (tens of images, a few generator steps) so the file runs in seconds;
the recipe is the same one ``make demo`` runs at full size.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
from pathlib import Path

import pytest
import torch
from PIL import Image as PILImage
from PIL import JpegImagePlugin
from scipy.stats import ks_2samp

from model import demo_generator
from webapp.cli.demo_command import demo
from webapp.services.operations import demo_data
from webapp.services.operations.demo_data import (
    MANIFEST_NAME,
    build_demo_folder,
    demo_params,
    ensure_demo_folder,
    is_complete,
)

SMALL = {
    "seed": 7,
    "n_real": 40,
    "n_fake": 40,
    "image_size": (64, 96),
    "mislabelled_fraction": 0.1,
    "generator_steps": 4,
    "generator_batch": 8,
}


def _no_network(*args, **kwargs):
    raise AssertionError("the demo builder tried to open a network connection")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    """One small demo folder, built with the network switched off."""
    folder = tmp_path_factory.mktemp("demo") / "demo-src"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _no_network)
        summary = build_demo_folder(folder, **SMALL)
    return folder, summary


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _images_by_class(folder: Path) -> dict[str, list[PILImage.Image]]:
    """Every image opened with Pillow, grouped by its TRUE class from the manifest."""
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    images: dict[str, list] = {"real": [], "fake": []}
    for record in manifest["files"]:
        image = PILImage.open(io.BytesIO((folder / record["path"]).read_bytes()))
        images[record["true_label"]].append(image)
    return images


def _quality_from_tables(image: PILImage.Image, references: dict) -> int:
    """The quality whose Pillow quantisation tables match this file's exactly."""
    tables = {index: list(table) for index, table in image.quantization.items()}
    matches = [quality for quality, reference in references.items() if reference == tables]
    assert matches, "quantisation tables match no Pillow quality: a different encoder was used"
    return matches[0]


def _reference_tables() -> dict[int, dict]:
    references = {}
    for quality in range(1, 101):
        buffer = io.BytesIO()
        PILImage.new("RGB", (16, 16)).save(buffer, "JPEG", quality=quality)
        tables = PILImage.open(buffer).quantization
        references[quality] = {index: list(table) for index, table in tables.items()}
    return references


def test_layout_counts_and_neutral_names(built):
    folder, summary = built
    assert sorted(path.name for path in folder.iterdir()) == [MANIFEST_NAME, "fake", "real"]
    real_files = sorted((folder / "real").iterdir())
    fake_files = sorted((folder / "fake").iterdir())
    assert all(path.suffix == ".jpg" for path in real_files + fake_files)
    # Same number misplaced each way (round(0.1 * 40) = 4), so each folder keeps 40 files.
    assert len(real_files) == len(fake_files) == 40
    assert summary["counts"]["by_folder"] == {"real": 40, "fake": 40}
    assert summary["counts"]["by_true_label"] == {"real": 40, "fake": 40}
    # A file name must not tell the class: one shared numbering, no "real"/"fake" in names.
    names = [path.stem for path in real_files + fake_files]
    assert len(set(names)) == 80
    assert not any("real" in name or "fake" in name for name in names)


def test_manifest_records_the_truth(built):
    folder, summary = built
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    on_disk = {str(path.relative_to(folder)) for path in folder.rglob("*.jpg") if path.is_file()}
    assert {record["path"] for record in manifest["files"]} == on_disk
    for record in manifest["files"]:
        data = (folder / record["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
        assert record["path"].split("/")[0] == record["folder_label"]
        assert record["mislabelled"] == (record["true_label"] != record["folder_label"])
        assert record["source"] in {Path(name).stem for name in demo_generator.PHOTOGRAPHS}
    mislabelled = [record for record in manifest["files"] if record["mislabelled"]]
    assert sorted(manifest["mislabelled"]) == sorted(record["path"] for record in mislabelled)
    assert sum(r["true_label"] == "fake" for r in mislabelled) == 4  # fakes sitting in real/
    assert sum(r["true_label"] == "real" for r in mislabelled) == 4  # reals sitting in fake/
    assert sorted(entry["path"] for entry in summary["mislabelled"]) == sorted(
        manifest["mislabelled"]
    )
    assert manifest["params"] == demo_params(**SMALL).as_json()


def test_same_seed_gives_byte_identical_files_whatever_the_thread_count(built, tmp_path):
    folder, _ = built
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # a machine with another core count
    try:
        again = build_demo_folder(tmp_path / "again", **SMALL)
        assert torch.get_num_threads() == threads + 1  # the caller's setting is restored
    finally:
        torch.set_num_threads(threads)
    assert _tree_hashes(Path(again["folder"])) == _tree_hashes(folder)


def test_another_seed_gives_other_images(built, tmp_path):
    folder, _ = built
    other = build_demo_folder(tmp_path / "other", **{**SMALL, "seed": 8, "n_real": 8, "n_fake": 8})
    first = set(_tree_hashes(folder).values())
    second = set(_tree_hashes(Path(other["folder"])).values())
    assert not first & second


def test_no_format_mode_or_metadata_shortcut(built):
    folder, _ = built
    for label, images in _images_by_class(folder).items():
        for image in images:
            assert image.format == "JPEG", label
            assert image.mode == "RGB", label
            assert not image.getexif(), label
            assert "exif" not in image.info and "icc_profile" not in image.info, label
            assert not image.info.get("progressive"), label
            assert JpegImagePlugin.get_sampling(image) == 2, label  # 4:2:0 for both


def test_no_size_shortcut(built):
    folder, _ = built
    images = _images_by_class(folder)
    for axis in (0, 1):
        real = [image.size[axis] for image in images["real"]]
        fake = [image.size[axis] for image in images["fake"]]
        assert set(real) == set(fake) == set(SMALL["image_size"])
        assert ks_2samp(real, fake).pvalue > 0.05


def test_no_jpeg_quality_shortcut(built):
    folder, _ = built
    references = _reference_tables()
    qualities = {
        label: [_quality_from_tables(image, references) for image in images]
        for label, images in _images_by_class(folder).items()
    }
    low, high = demo_data.JPEG_QUALITIES
    for values in qualities.values():
        assert all(low <= value <= high for value in values)
        assert len(set(values)) > 5  # a spread, not one telltale setting
    assert ks_2samp(qualities["real"], qualities["fake"]).pvalue > 0.05


def test_fakes_are_not_copies_of_real_files(built):
    folder, _ = built
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    by_class = {"real": set(), "fake": set()}
    for record in manifest["files"]:
        by_class[record["true_label"]].add(record["sha256"])
    assert not by_class["real"] & by_class["fake"]


def test_reuses_an_intact_folder_and_rebuilds_a_damaged_one(tmp_path):
    options = {**SMALL, "n_real": 6, "n_fake": 6, "generator_steps": 2}
    first = ensure_demo_folder(tmp_path / "demo", **options)
    assert first["reused"] is False
    assert is_complete(tmp_path / "demo", demo_params(**options))
    second = ensure_demo_folder(tmp_path / "demo", **options)
    assert second["reused"] is True
    assert second["mislabelled"] == first["mislabelled"]
    victim = next((tmp_path / "demo" / "real").iterdir())
    victim.write_bytes(b"damaged")
    assert ensure_demo_folder(tmp_path / "demo", **options)["reused"] is False
    assert victim.read_bytes() != b"damaged"
    assert ensure_demo_folder(tmp_path / "demo", force=True, **options)["reused"] is False
    changed = ensure_demo_folder(tmp_path / "demo", **{**options, "seed": 99})
    assert changed["reused"] is False and changed["seed"] == 99


def test_refuses_to_replace_a_folder_that_is_not_a_demo(tmp_path):
    precious = tmp_path / "photos" / "holiday.jpg"
    precious.parent.mkdir()
    precious.write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="not a demo folder"):
        build_demo_folder(tmp_path / "photos", **{**SMALL, "n_real": 2, "n_fake": 2})
    assert precious.read_bytes() == b"not ours"


@pytest.mark.parametrize(
    "bad",
    [
        {"n_real": 0},
        {"image_size": 60},
        {"image_size": (8,)},
        {"image_size": (64, 1024)},
        {"mislabelled_fraction": 0.6},
    ],
)
def test_rejects_bad_parameters_with_a_reason(tmp_path, bad):
    with pytest.raises(ValueError):
        build_demo_folder(tmp_path / "demo", **{**SMALL, **bad})
    assert not (tmp_path / "demo").exists()


def test_cli_builds_under_the_instance_folder_then_reuses(app):
    runner = app.test_cli_runner()
    arguments = ["--n-real", "5", "--n-fake", "5", "--generator-steps", "2", "--build-only"]
    result = runner.invoke(demo, arguments)
    assert result.exit_code == 0, result.output
    folder = Path(app.instance_path) / "demo-src"
    assert "5 real/ + 5 fake/ images" in result.output and "built in" in result.output
    assert len(list((folder / "real").glob("*.jpg"))) == 5
    hashes = _tree_hashes(folder)
    again = runner.invoke(demo, arguments)
    assert again.exit_code == 0, again.output
    assert "reused" in again.output
    assert _tree_hashes(folder) == hashes


def test_cli_demo_imports_once(app):
    """After the importer is merged: the demo import is idempotent (skipped until then)."""
    pytest.importorskip("webapp.services.importing.importer")
    runner = app.test_cli_runner()
    arguments = ["--n-real", "5", "--n-fake", "5", "--generator-steps", "2"]
    first = runner.invoke(demo, arguments)
    assert first.exit_code == 0, first.output
    assert "imported 10," in first.output and "rejected 0" in first.output  # MANIFEST.json too
    second = runner.invoke(demo, arguments)
    assert second.exit_code == 0, second.output
    assert "imported 0," in second.output and "duplicates 10" in second.output
