"""Evidence about where an image came from, read from its own bytes, beside the model's verdict.

Owns: the content credentials (C2PA), the metadata (EXIF, XMP/IPTC, PNG text, JPEG tables), the
invisible watermarks of open-source generators, and the perceptual hash that finds near
duplicates. :func:`compute` runs at import for every image (in the import's worker processes);
the result is stored in ``image_evidence`` and shown on the check page, the review desk and in
reports. Every finding says what it found and how much it means (``weight``): "strong" evidence is
hard to produce by accident (a valid signed manifest, a generator's own mark, the same picture
reviewed before), "moderate" is the model's confident call on a familiar image, "weak" evidence
is easily added or removed (camera EXIF) or doubtful, "none" means nothing was found.

No PyTorch here: the web process and the importer may run all of it.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from PIL import Image as PILImage

from . import credentials, metadata, phash, watermark

KINDS = ("credentials", "metadata", "watermark", "phash")
TITLES = {
    "credentials": "Content Credentials (C2PA)",
    "metadata": "Metadata",
    "watermark": "Invisible watermark",
    "phash": "Perceptual hash",
    "similar": "Near duplicates",
    "model": "The model",
}


def finding(status: str, summary: str, weight: str = "none", **details: Any) -> dict[str, Any]:
    """One evidence item: ``status`` (found, none, invalid, not checked), a sentence a reviewer
    can read, how much it means (strong, weak, none) and the details behind it."""
    return {"status": status, "summary": summary, "weight": weight, "details": details}


def compute(data: bytes) -> dict[str, Any]:
    """Every intrinsic finding about the image in ``data``, its perceptual hash and what strong
    evidence alone says it is: ``{"findings", "phash", "claims"}``. Never raises for a bad
    image: a finding that could not be made says so."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with PILImage.open(io.BytesIO(data)) as image:
            image.load()
            findings = {
                "credentials": credentials.read(data, image.format),
                "metadata": metadata.read(image, data),
                "watermark": watermark.read(image),
            }
            hash_value = phash.perceptual_hash(image)
    findings["phash"] = finding(
        "found",
        f"64-bit DCT perceptual hash {phash.to_hex(hash_value)}",
        hash=phash.to_hex(hash_value),
    )
    return {"findings": findings, "phash": hash_value, "claims": claims_of(findings)}


def safe_compute(data: bytes) -> dict[str, Any]:
    """:func:`compute`, or a record that says why evidence could not be read (an import never
    fails because of evidence)."""
    try:
        return compute(data)
    except Exception as error:  # a library choking on a hostile file: the image still imports
        reason = f"{type(error).__name__}: {error}"[:300]
        failed = finding("not checked", f"Evidence could not be read: {reason}")
        return {"findings": dict.fromkeys(KINDS[:3], failed), "phash": None, "claims": None}


def claims_of(findings: dict[str, Any], similar: list[dict[str, Any]] | None = None) -> str | None:
    """What strong evidence alone says the image is: "fake", "real" or None (nothing strong).

    Fake: valid credentials or metadata naming a generator or a trained-algorithm source, or a
    generator's watermark. Real: valid credentials of a digital capture, or camera metadata
    together with a near duplicate reviewed (or labelled) REAL.
    """
    said_fake = [
        item for item in findings.values() if item and item.get("details", {}).get("says") == "fake"
    ]
    if any(item["weight"] == "strong" for item in said_fake):
        return "fake"
    says_real = findings.get("credentials", {}).get("details", {}).get("says") == "real"
    if says_real and findings["credentials"]["weight"] == "strong":
        return "real"
    camera = findings.get("metadata", {}).get("details", {}).get("camera")
    if camera and similar and any(item.get("label") == "real" for item in similar):
        return "real"
    return None
