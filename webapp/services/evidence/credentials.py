"""Content Credentials: the C2PA manifest read and validated with c2pa-python.

A manifest whose signature and hashes validate says who signed it and what the signer states
(the claim generator, actions with an IPTC digital source type). Valid and stating trained
algorithmic media is strong evidence of a generated image; valid and stating a digital capture is
strong evidence of a photograph only from a signer on the library's trust list (the signer is
always shown; no trust list is configured by default, so such claims count as weak). A manifest
that fails validation was altered after signing.
"""

from __future__ import annotations

import io
import json
from typing import Any

from .metadata import CAPTURE_SOURCE_TYPES, GENERATED_SOURCE_TYPES

MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff"}
MARKER = b"c2pa"  # the JUMBF box label every manifest store carries
# Validation codes about whether the signer is trusted, not about whether the file was altered.
TRUST_CODES = ("signingCredential.untrusted",)


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
    untrusted = [item for item in failures if item.startswith(TRUST_CODES)]
    failures = [item for item in failures if item not in untrusted]
    details = {
        "state": state,
        "claim_generator": generator,
        "signer": signer,
        "issuer": signature.get("issuer"),
        "digital_source_types": sources,
        "failures": failures[:10],
        "trusted": not untrusted,
    }
    if failures or state.lower() == "invalid":
        why = failures[0] if failures else state
        summary = f"Content Credentials INVALID ({why}): altered after signing by {signer}."
        return finding("invalid", summary, "strong", says=None, **details)
    lowered = {source.lower() for source in sources}
    says = "fake" if lowered & GENERATED_SOURCE_TYPES else None
    says = says or ("real" if lowered & CAPTURE_SOURCE_TYPES else None)
    stated = f", digital source type {', '.join(sources)}" if sources else ""
    trust = "" if not untrusted else " The signer is on no trust list known here."
    summary = f"Valid Content Credentials signed by {signer} ({generator}){stated}.{trust}"
    # Nobody gains by falsely signing "generated"; "captured" counts only from a trusted signer.
    weight = "strong" if says == "fake" or (says == "real" and not untrusted) else "weak"
    return finding("found", summary, weight, says=says, **details)
