"""Files for the import tests: good images laid out as datasets arrive, and one bad file of
every kind the importer must refuse (each made here, a few bytes to a few kilobytes)."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from tests.helpers import make_image_bytes

# --- Good files -----------------------------------------------------------------------------


def image_bytes(seed: int, fmt: str = "JPEG", size=(40, 32), mode: str = "RGB", **options) -> bytes:
    """A small deterministic image: smooth enough to look like a picture, distinct per seed."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 256, size=(2, 2, 3)).astype(np.uint8)
    image = PILImage.fromarray(corners).resize(size, PILImage.Resampling.BILINEAR)
    noise = rng.integers(-12, 12, size=(size[1], size[0], 3))
    pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    image = PILImage.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    if fmt == "JPEG":
        options.setdefault("quality", 90)
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    """Write {relative path: bytes} under ``root``."""
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def kaggle_layout(per_folder: int = 5, seed: int = 0) -> dict[str, bytes]:
    """REAL/FAKE under train/ and test/, in mixed case and one level down."""
    files = {}
    folders = ("data/Train/REAL", "data/train/fake", "data/TEST/Real", "data/test/FAKE")
    for f, folder in enumerate(folders):
        for i in range(per_folder):
            files[f"{folder}/{i}.jpg"] = image_bytes(seed + 1000 * f + i)
    return files


def simple_layout(per_folder: int = 5, seed: int = 0) -> dict[str, bytes]:
    """real/ and fake/ at the top."""
    files = {f"real/{i}.jpg": image_bytes(seed + i) for i in range(per_folder)}
    files.update({f"fake/{i}.png": image_bytes(seed + 500 + i, "PNG") for i in range(per_folder)})
    return files


def flat_layout(count: int = 6, seed: int = 0) -> dict[str, bytes]:
    """Unlabelled images in one folder."""
    return {f"img_{i}.jpg": image_bytes(seed + i) for i in range(count)}


def jpeg_with_exif(seed: int = 0, make: str = "Canon", model: str = "EOS 5D") -> bytes:
    """A JPEG whose EXIF names a camera."""
    exif = PILImage.Exif()
    exif[271] = make
    exif[272] = model
    exif[306] = "2024:05:01 10:00:00"
    rgb = PILImage.open(io.BytesIO(image_bytes(seed)))
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()


# --- Bad files ------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height``: what a decompression bomb or an
    absurd image looks like before anyone decodes it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def truncated_jpeg() -> bytes:
    """The first half of a JPEG."""
    data = make_image_bytes(seed=7, size=(160, 120))
    return data[: len(data) // 2]


def ppm_image() -> bytes:
    """A format Pillow reads but the store does not accept."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8), (10, 20, 30)).save(buffer, format="PPM")
    return buffer.getvalue()


def heic_lookalike() -> bytes:
    """The start of an HEIC file (an ISO-BMFF 'ftyp heic' box); no decoder here."""
    return struct.pack(">I", 24) + b"ftypheic" + b"\x00" * 4 + b"mif1heic" + b"\x00" * 64


def wide_png() -> bytes:
    """A real, decodable PNG 3000 x 10: an absurd aspect ratio."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (3000, 10), (200, 100, 50)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_FILES = {
    # name: (bytes, expected start of the reason)
    "zero.jpg": (b"", "zero-byte file"),
    "half.jpg": (truncated_jpeg(), "truncated image"),
    "notes.jpg": (b"these are not the pixels you are looking for\n" * 5, "not an image"),
    "old.ppm": (ppm_image(), "unsupported format: PPM"),
    "phone.heic": (heic_lookalike(), "unsupported format: HEIC"),
    "bomb.png": (png_claiming(100_000, 100_000), "decompression bomb"),
    "tall.png": (png_claiming(2, 40_000), "absurd dimensions"),
    "wide.png": (wide_png(), "absurd dimensions"),
}


def zip_with(members: dict[str, bytes], path: Path, compression=zipfile.ZIP_DEFLATED) -> Path:
    """A zip archive holding ``members`` under the names given (which may be hostile)."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


def zip_with_symlink(path: Path, good: dict[str, bytes]) -> Path:
    """A zip holding ``good`` and a symbolic link member."""
    zip_with(good, path)
    with zipfile.ZipFile(path, "a") as archive:
        link = zipfile.ZipInfo("real/link.jpg")
        link.external_attr = (0o120777 << 16) | 0x20
        archive.writestr(link, "/etc/passwd")
    return path


def tar_with(members: dict[str, bytes], path: Path, mode: str = "w") -> Path:
    """A tar (``mode`` "w", "w:gz") holding ``members`` under the names given."""
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def tar_with_links(path: Path, good: dict[str, bytes]) -> Path:
    """A tar holding ``good``, a symbolic link, a hard link and a path-traversal member."""
    tar_with(good, path)
    with tarfile.open(path, "a") as archive:
        for name, kind in (("real/sym.jpg", tarfile.SYMTYPE), ("real/hard.jpg", tarfile.LNKTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "../../etc/passwd"
            archive.addfile(info)
        data = image_bytes(99)
        info = tarfile.TarInfo("../outside/escape.jpg")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def zeros(megabytes: float) -> bytes:
    """Highly compressible filler for archive bombs."""
    return b"\x00" * int(megabytes * 1024 * 1024)


def zip_claiming(path: Path, members: dict[str, bytes], declared: int) -> Path:
    """A zip whose headers lie: each member claims to expand to ``declared`` bytes, in its local
    and its central header. Claiming a huge size is a bomb visible from the directory alone;
    claiming a small one hides a bomb from a reader that trusts the header."""
    data = bytearray(zip_with(members, path).read_bytes())
    size = struct.pack("<I", declared)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = data.find(signature)
        while start != -1:
            data[start + offset : start + offset + 4] = size
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))
    return path
