"""Bad input: every kind is rejected with its reason, and everything else is imported."""

from __future__ import annotations

import os
import zipfile

import pytest
from sqlalchemy import func, select

from tests.bad_inputs import (
    BAD_FILES,
    image_bytes,
    simple_layout,
    tar_with,
    tar_with_links,
    write_files,
    zeros,
    zip_with,
    zip_with_symlink,
)
from webapp.extensions import db
from webapp.models import Image
from webapp.services.importing.importer import import_path
from webapp.services.storage import instance_root


def reasons(report) -> dict[str, str]:
    return {item["path"]: item["reason"] for item in report.rejected}


def test_each_bad_file_is_rejected_with_its_reason(app_ctx, tmp_path):
    good = simple_layout(3)
    files = dict(good, **{f"real/{name}": data for name, (data, _) in BAD_FILES.items()})
    report = import_path(write_files(tmp_path / "in", files), dataset="bad")
    assert report.imported == len(good)
    found = reasons(report)
    assert set(found) == {f"real/{name}" for name in BAD_FILES}
    for name, (_, expected) in BAD_FILES.items():
        assert found[f"real/{name}"].startswith(expected), (name, found[f"real/{name}"])
    assert db.session.scalar(select(func.count(Image.id))) == len(good)


def test_bad_files_inside_a_zip(app_ctx, tmp_path):
    members = {f"fake/{name}": data for name, (data, _) in BAD_FILES.items()}
    members["fake/ok.jpg"] = image_bytes(1)
    report = import_path(zip_with(members, tmp_path / "bad.zip"), dataset="badzip")
    assert report.imported == 1
    for name, (_, expected) in BAD_FILES.items():
        assert reasons(report)[f"fake/{name}"].startswith(expected)


def test_zip_slip_and_links_are_refused(app_ctx, tmp_path):
    members = {
        "real/ok.jpg": image_bytes(1),
        "../../escape.jpg": image_bytes(2),
        "/absolute.jpg": image_bytes(3),
        "real\\..\\..\\windows.jpg": image_bytes(4),
        "C:/drive.jpg": image_bytes(5),
    }
    archive = zip_with_symlink(tmp_path / "slip.zip", members)
    report = import_path(archive, dataset="slip")
    found = reasons(report)
    assert report.imported == 1
    for name in ("../../escape.jpg", "/absolute.jpg", "real\\..\\..\\windows.jpg", "C:/drive.jpg"):
        assert found[name].startswith("path traversal"), name
    assert found["real/link.jpg"].startswith("link in archive")
    assert not (tmp_path / "escape.jpg").exists() and not (tmp_path.parent / "escape.jpg").exists()


def test_tar_links_and_traversal_are_refused(app_ctx, tmp_path):
    archive = tar_with_links(tmp_path / "links.tar", {"real/ok.jpg": image_bytes(1)})
    report = import_path(archive, dataset="tarlinks")
    found = reasons(report)
    assert report.imported == 1
    assert found["real/sym.jpg"].startswith("link in archive")
    assert found["real/hard.jpg"].startswith("link in archive")
    assert found["../outside/escape.jpg"].startswith("path traversal")


def test_zip_member_that_expands_too_much_is_a_bomb(app_ctx, tmp_path):
    members = {"real/ok.jpg": image_bytes(1), "real/filler.bmp": zeros(3)}
    report = import_path(zip_with(members, tmp_path / "bomb.zip"), dataset="zipbomb")
    assert report.imported == 1
    assert reasons(report)["real/filler.bmp"].startswith("archive bomb: the member expands")


def test_archive_over_the_size_limit_is_refused_whole(app, app_ctx, tmp_path):
    app.config["MAX_ARCHIVE_BYTES"] = 10_000
    members = {f"real/{i}.jpg": image_bytes(i, size=(120, 90)) for i in range(5)}
    for name, archive in (
        ("big.zip", zip_with(members, tmp_path / "big.zip")),
        ("big.tar", tar_with(members, tmp_path / "big.tar")),
    ):
        report = import_path(archive, dataset=f"limit-{name}")
        assert report.imported == 0 and report.nothing_read
        assert report.rejected[0]["path"] == name
        assert report.rejected[0]["reason"].startswith("archive bomb: expands to over")


def test_tar_gz_bomb_is_refused_before_it_is_expanded(app_ctx, tmp_path):
    members = {"real/ok.jpg": image_bytes(1), "real/filler.bmp": zeros(4)}
    archive = tar_with(members, tmp_path / "bomb.tar.gz", "w:gz")
    assert archive.stat().st_size < 100_000
    report = import_path(archive, dataset="targz-bomb")
    assert report.nothing_read
    assert report.rejected[0]["reason"].startswith("archive bomb: expands")


def test_decompression_bomb_uses_configured_pixel_limit(app, app_ctx, tmp_path):
    app.config["MAX_IMAGE_PIXELS"] = 2_000
    files = {
        "real/small.png": image_bytes(1, "PNG", size=(40, 40)),
        "real/big.png": image_bytes(2, "PNG", size=(60, 40)),
    }
    report = import_path(write_files(tmp_path / "in", files), dataset="pixels")
    assert report.imported == 1
    assert reasons(report)["real/big.png"].startswith("decompression bomb: 60x40 = 2,400 pixels")


def test_encrypted_and_corrupt_zip_members(app_ctx, tmp_path):
    archive = zip_with(
        {"real/ok.jpg": image_bytes(1), "real/b.jpg": image_bytes(2)}, tmp_path / "z.zip"
    )
    with zipfile.ZipFile(archive) as source:
        infos = source.infolist()
    data = bytearray(archive.read_bytes())
    # Flip the encryption flag of the second member (local and central headers).
    for offset in (infos[1].header_offset + 6, data.rfind(b"PK\x01\x02") + 8):
        data[offset] |= 0x1
    archive.write_bytes(bytes(data))
    report = import_path(archive, dataset="enc")
    assert report.imported == 1
    assert reasons(report)["real/b.jpg"] == "encrypted archive member"


def test_damaged_and_bzip2_zip_members(app_ctx, tmp_path):
    good, broken = image_bytes(1), image_bytes(2)
    archive = zip_with({"real/ok.jpg": good, "real/broken.jpg": broken}, tmp_path / "z.zip")
    data = bytearray(archive.read_bytes())
    start = data.find(b"real/broken.jpg") + len("real/broken.jpg") + 40
    data[start : start + 8] = bytes(8)  # damage the compressed bytes of the second member
    archive.write_bytes(bytes(data))
    bzipped = zip_with({"fake/b.jpg": image_bytes(3)}, tmp_path / "b.zip", zipfile.ZIP_BZIP2)
    report = import_path(archive, dataset="damaged")
    assert report.imported == 1
    assert reasons(report)["real/broken.jpg"].startswith("damaged archive member")
    assert import_path(bzipped, dataset="bzip2").imported == 1


def test_unreadable_file_in_folder_is_reported(app_ctx, tmp_path):
    folder = write_files(
        tmp_path / "in", {"real/a.jpg": image_bytes(1), "real/b.jpg": image_bytes(2)}
    )
    (folder / "real" / "b.jpg").chmod(0)
    try:
        if os.access(folder / "real" / "b.jpg", os.R_OK):
            pytest.skip("this user reads every file (root)")
        report = import_path(folder, dataset="perm")
        assert report.imported == 1
        assert reasons(report)["real/b.jpg"].startswith("unreadable")
    finally:
        (folder / "real" / "b.jpg").chmod(0o644)


def test_stale_temporary_files_are_cleaned(app_ctx, tmp_path):
    temporary = instance_root() / "tmp"
    temporary.mkdir(parents=True)
    (temporary / "999999999-abc.part").write_bytes(b"half a file")
    mine = temporary / f"{os.getpid()}-live.part"
    mine.write_bytes(b"being written")
    import_path(write_files(tmp_path / "in", {"a.jpg": image_bytes(1)}), dataset="tmp")
    assert sorted(p.name for p in temporary.iterdir()) == [mine.name]
