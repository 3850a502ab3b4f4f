"""What the file's metadata says: camera EXIF, IPTC digital source type, generator traces, JPEG
quantisation, or nothing at all.

Camera fields are weak evidence of a photograph (any tool can write them, and a generator's output
rarely has them); a generator's own traces (Stable Diffusion web UIs' ``parameters`` chunk,
ComfyUI's ``prompt`` and ``workflow``, a known generator in ``Software``, an IPTC digital source
type of trained algorithmic media) are strong evidence of a generated image. Stripped metadata
means little: most platforms strip it on upload.
"""

from __future__ import annotations

import re
from typing import Any

from PIL import Image as PILImage

from .jpeg_quality import LUMINANCE_BASE, estimate_quality, ijg_table

EXIF_IFD = 0x8769
CAMERA_TAGS = {271: "make", 272: "model", 305: "software", 306: "datetime"}
EXIF_SUB_TAGS = {36867: "capture_time", 42036: "lens", 42035: "lens_make"}
GENERATOR_CHUNKS = ("parameters", "prompt", "workflow")
OTHER_TEXT_CHUNKS = ("Software", "Description", "Comment", "Source", "Title")
# Names generators and their front ends write into Software, CreatorTool or PNG text.
KNOWN_GENERATORS = (
    "stable diffusion",
    "automatic1111",
    "comfyui",
    "invokeai",
    "fooocus",
    "novelai",
    "midjourney",
    "dall-e",
    "dall·e",
    "openai",
    "adobe firefly",
    "imagen",
    "gemini",
    "leonardo.ai",
    "flux",
    "craiyon",
    "nightcafe",
    "dreamstudio",
)
SOURCE_TYPE = re.compile(rb"digitalsourcetype/([A-Za-z]+)", re.IGNORECASE)
CREATOR_TOOL = re.compile(rb"CreatorTool(?:=\"|>)([^\"<]{1,200})")
GENERATED_SOURCE_TYPES = {
    "trainedalgorithmicmedia",
    "compositewithtrainedalgorithmicmedia",
    "algorithmicmedia",
    "compositesynthetic",
}
CAPTURE_SOURCE_TYPES = {"digitalcapture", "negativefilm", "positivefilm", "print"}


def _text(value: Any, limit: int = 200) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).replace("\x00", "").strip()[:limit]


def exif_fields(image: PILImage.Image) -> dict[str, str]:
    """Camera make and model, lens, capture time and software from the EXIF block."""
    try:
        exif = image.getexif()
    except Exception:  # a damaged EXIF block is the same as none
        return {}
    fields = {name: _text(exif[tag]) for tag, name in CAMERA_TAGS.items() if exif.get(tag)}
    try:
        sub = exif.get_ifd(EXIF_IFD)
    except Exception:
        sub = {}
    fields.update({name: _text(sub[tag]) for tag, name in EXIF_SUB_TAGS.items() if sub.get(tag)})
    return {name: value for name, value in fields.items() if value}


def png_text(image: PILImage.Image) -> dict[str, str]:
    """The PNG text chunks that matter (generator parameters first), shortened."""
    if image.format != "PNG":
        return {}
    info = image.info
    chunks = {name: _text(info[name], 500) for name in GENERATOR_CHUNKS if info.get(name)}
    chunks.update({name: _text(info[name]) for name in OTHER_TEXT_CHUNKS if info.get(name)})
    return chunks


def xmp_fields(image: PILImage.Image, data: bytes) -> dict[str, str]:
    """The IPTC digital source type and the creator tool, wherever the XMP packet sits."""
    packet = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
    if isinstance(packet, str):
        packet = packet.encode()
    haystack = packet or (data if b"digitalsourcetype" in data.lower() else b"")
    fields = {}
    if match := SOURCE_TYPE.search(haystack or data[:262144]):
        fields["digital_source_type"] = match.group(1).decode()
    if match := CREATOR_TOOL.search(packet or data[:262144]):
        fields["creator_tool"] = _text(match.group(1))
    return fields


def jpeg_tables(image: PILImage.Image) -> dict[str, Any] | None:
    """Quantisation tables: how many, the estimated IJG quality, and whether they are exactly
    libjpeg's (most software) or the encoder's own (many cameras, some editors)."""
    tables = getattr(image, "quantization", None) if image.format in ("JPEG", "MPO") else None
    if not tables:
        return None
    quality = estimate_quality(tables)
    standard = (
        quality is not None and list(tables[0]) == ijg_table(LUMINANCE_BASE, quality).tolist()
    )
    return {
        "tables": len(tables),
        "estimated_quality": quality,
        "standard_tables": standard,
        "luminance_first_row": list(tables[0])[:8],
    }


def generators_named(*texts: str) -> list[str]:
    """The known generator names that appear in ``texts``."""
    joined = " ".join(texts).lower()
    return [name for name in KNOWN_GENERATORS if name in joined]


def read(image: PILImage.Image, data: bytes) -> dict[str, Any]:
    """The metadata finding: what is there, and what it says."""
    from . import finding

    exif, text, xmp = exif_fields(image), png_text(image), xmp_fields(image, data)
    tables = jpeg_tables(image)
    named = generators_named(exif.get("software", ""), xmp.get("creator_tool", ""), *text.values())
    source = xmp.get("digital_source_type", "")
    camera = " ".join(v for v in (exif.get("make"), exif.get("model")) if v)
    details = {"exif": exif, "png_text": text, "xmp": xmp, "jpeg": tables, "generators": named}
    details["camera"] = camera or None
    details["stripped"] = not (exif or text or xmp or image.info.get("icc_profile"))
    generator_chunks = [name for name in GENERATOR_CHUNKS if name in text]
    if source.lower() in GENERATED_SOURCE_TYPES or generator_chunks or named:
        traces = (
            [f"digital source type {source}"] if source.lower() in GENERATED_SOURCE_TYPES else []
        )
        traces += [f"PNG '{name}' chunk" for name in generator_chunks]
        traces += [f"generator name '{name}'" for name in named]
        summary = f"Generator traces: {', '.join(traces)}. A tool wrote these; strong evidence."
        return finding("found", summary, "strong", says="fake", **details)
    if camera:
        when = f", taken {exif['capture_time']}" if exif.get("capture_time") else ""
        summary = f"Camera metadata: {camera}{when}. Easily written by any tool; weak evidence."
        return finding("found", summary, "weak", says="real", **details)
    if source:
        summary = f"IPTC digital source type {source}; no camera fields. Weak evidence."
        says = "real" if source.lower() in CAPTURE_SOURCE_TYPES else None
        return finding("found", summary, "weak", says=says, **details)
    if details["stripped"]:
        summary = "No metadata at all (stripped). Platforms strip it on upload; means little."
        return finding("none", summary, "none", says=None, **details)
    summary = "Metadata without camera fields or generator traces. Means little."
    return finding("none", summary, "none", says=None, **details)
