"""Content Credentials: the C2PA manifest read and validated with c2pa-python.

A manifest whose signature and hashes validate says who signed it and what the signer states
(the claim generator, actions with an IPTC digital source type). Valid and stating trained
algorithmic media is strong evidence of a generated image; valid and stating a digital capture is
strong evidence of a photograph as far as the signer can be trusted (the signer is shown; the
trust list is not checked here). A manifest that fails validation was altered after signing.
"""

from __future__ import annotations

import io
import json
from typing import Any

from .metadata import CAPTURE_SOURCE_TYPES, GENERATED_SOURCE_TYPES

MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff"}
MARKER = b"c2pa"  # the JUMBF box label every manifest store carries


def _library():
    try:
        import c2pa
    except Exception:  # not installed, or its native library does not load
        return None
    return c2pa


def _source_types(manifest: dict[str, Any]) -> list[str]:
    found = []
    for assertion in manifest.get("assertions", []):
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (assertion.get("data") or {}).get("actions", []):
            source = str(action.get("digitalSourceType") or "")
            if source:
                found.append(source.rstrip("/").rsplit("/", 1)[-1])
    return found


def _failures(reader) -> list[str]:
    results = reader.get_validation_results() or {}
    active = results.get("activeManifest") or {}
    return [
        f"{item.get('code')}: {item.get('explanation', '')}" for item in active.get("failure", [])
    ]


def read(data: bytes, image_format: str | None) -> dict[str, Any]:
    """The credentials finding for a file's bytes."""
    from . import finding

    c2pa = _library()
    if c2pa is None:
        return finding("not checked", "Not checked: library unavailable.")
    if MARKER not in data or image_format not in MIME_TYPES:
        return finding("none", "No Content Credentials. Most images have none; means little.")
    try:
        reader = c2pa.Reader(MIME_TYPES[image_format], io.BytesIO(data))
    except Exception as error:  # no manifest after all, or one too damaged to parse
        if "ManifestNotFound" in type(error).__name__ or "not found" in str(error).lower():
            return finding("none", "No Content Credentials. Most images have none; means little.")
        return finding("invalid", f"Content Credentials unreadable: {error}", "strong")
    return _describe(reader)


def _describe(reader) -> dict[str, Any]:
    from . import finding

    store = json.loads(reader.json())
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    generator = manifest.get("claim_generator") or ", ".join(
        item.get("name", "") for item in manifest.get("claim_generator_info", [])
    )
    signature = manifest.get("signature_info") or {}
    signer = signature.get("common_name") or signature.get("issuer") or "unknown"
    sources = _source_types(manifest)
    state = reader.get_validation_state() or ""
    failures = _failures(reader)
    details = {
        "state": state,
        "claim_generator": generator,
        "signer": signer,
        "issuer": signature.get("issuer"),
        "digital_source_types": sources,
        "failures": failures[:10],
    }
    if failures or state.lower() == "invalid":
        why = failures[0] if failures else state
        summary = f"Content Credentials INVALID ({why}): altered after signing by {signer}."
        return finding("invalid", summary, "strong", says=None, **details)
    lowered = {source.lower() for source in sources}
    says = "fake" if lowered & GENERATED_SOURCE_TYPES else None
    says = says or ("real" if lowered & CAPTURE_SOURCE_TYPES else None)
    stated = f", digital source type {', '.join(sources)}" if sources else ""
    summary = f"Valid Content Credentials signed by {signer} ({generator}){stated}."
    weight = "strong" if says else "weak"
    return finding("found", summary, weight, says=says, **details)
