"""The data audit: what the images of a dataset look like per class, and what could let a
detector tell real from fake without looking at the content.

- :func:`dataset_stats`: distributions of width, height, aspect ratio, area, file size and JPEG
  quality per class, the IQR rule for area outliers, formats, colour modes, EXIF presence;
- :func:`shortcut_findings` / :func:`shortcut_warnings`: for each such attribute, how well a rule
  on that attribute alone separates the classes (balanced accuracy). Detectors are known to learn
  these shortcuts (all fakes PNG, all fakes 512x512, different JPEG quality) instead of the content;
- the training images' per-channel statistics (:mod:`.normalisation`), when cheap or stored.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from flask import current_app
from sqlalchemy import select

from ...extensions import db
from ...models import DatasetImage, Image, Label
from .normalisation import channel_stats_entry, dataset_id, training_image_ids

CLASSES = (Label.REAL, Label.FAKE, Label.UNKNOWN)
NUMERIC = ("width", "height", "aspect", "area", "kilobytes", "jpeg_quality")
CATEGORICAL = ("format", "mode", "exif", "size")
# Attributes that describe the same thing: one warning per group, from its strongest member.
SHORTCUT_GROUPS = {
    "image size": ("size", "width", "height", "area"),
    "aspect ratio": ("aspect",),
    "file format": ("format",),
    "colour mode": ("mode",),
    "EXIF presence": ("exif",),
    "JPEG quality": ("jpeg_quality",),
}
SHORTCUT_THRESHOLD = 0.8
MIN_PER_CLASS = 10
# A category seen fewer times than this is pooled with the other rare ones ("other"), so
# that a rule cannot score by memorising values unique to one image.
MIN_CATEGORY = 5
HISTOGRAM_BINS = 20


# --- Loading --------------------------------------------------------------------------------


def _columns(dataset_name: str | None) -> dict[str, np.ndarray]:
    """One array per attribute, one entry per image (of the dataset, or all)."""
    statement = select(
        Image.label,
        Image.split,
        Image.width,
        Image.height,
        Image.bytes,
        Image.format,
        Image.mode,
        Image.has_exif,
        Image.jpeg_quality,
    )
    chosen = dataset_id(dataset_name)
    if chosen is not None:
        statement = statement.join(DatasetImage, DatasetImage.image_id == Image.id).where(
            DatasetImage.dataset_id == chosen
        )
    rows = db.session.execute(statement).all()
    names = ("label", "split", "width", "height", "bytes", "format", "mode", "exif", "quality")
    raw = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    width = np.asarray(raw["width"], dtype=np.float64)
    height = np.asarray(raw["height"], dtype=np.float64)
    quality = [np.nan if q is None else q for q in raw["quality"]]
    return {
        "label": np.asarray(raw["label"], dtype=object),
        "split": np.asarray(raw["split"], dtype=object),
        "width": width,
        "height": height,
        "aspect": np.divide(width, height, out=np.zeros_like(width), where=height > 0),
        "area": width * height,
        "kilobytes": np.asarray(raw["bytes"], dtype=np.float64) / 1024,
        "jpeg_quality": np.asarray(quality, dtype=np.float64),
        "format": np.asarray(raw["format"], dtype=object),
        "mode": np.asarray(raw["mode"], dtype=object),
        "exif": np.asarray(["yes" if e else "no" for e in raw["exif"]], dtype=object),
        "size": np.asarray(
            [f"{w}x{h}" for w, h in zip(raw["width"], raw["height"], strict=True)], dtype=object
        ),
    }


# --- Distributions --------------------------------------------------------------------------


def _summary(values: np.ndarray) -> dict[str, float] | None:
    values = values[~np.isnan(values)]
    if not len(values):
        return None
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {
        "n": int(len(values)),
        "min": float(values.min()),
        "q1": float(q1),
        "median": float(median),
        "q3": float(q3),
        "max": float(values.max()),
        "mean": float(values.mean()),
    }


def _histogram(columns: dict, attribute: str, labels: list[str]) -> dict[str, Any] | None:
    values = columns[attribute]
    known = ~np.isnan(values)
    if not known.any():
        return None
    low, high = float(values[known].min()), float(values[known].max())
    logarithmic = low > 0 and high / low > 20
    if low == high:
        edges = np.array([low - 0.5, high + 0.5])
    elif logarithmic:
        edges = np.geomspace(low, high, HISTOGRAM_BINS + 1)
    else:
        edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    counts = {}
    for label in labels:
        chosen = values[(columns["label"] == label) & known]
        counts[label] = np.histogram(chosen, bins=edges)[0].tolist()
    return {"edges": [float(e) for e in edges], "log": logarithmic, "counts": counts}


def area_outliers(area: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The IQR rule on image area: outside [Q1 - 1.5 IQR, Q3 + 1.5 IQR] is an outlier."""
    if not len(area):
        return {"count": 0, "fraction": 0.0, "low": None, "high": None, "by_class": {}}
    q1, q3 = np.percentile(area, [25, 75])
    low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    outside = (area < low) | (area > high)
    by_class = {}
    for label in CLASSES:
        mask = labels == label
        if mask.any():
            by_class[str(label)] = {
                "count": int(outside[mask].sum()),
                "fraction": float(outside[mask].mean()),
            }
    return {
        "count": int(outside.sum()),
        "fraction": float(outside.mean()),
        "low": float(low),
        "high": float(high),
        "by_class": by_class,
    }


def _categories(columns: dict, attribute: str, labels: list[str], top: int = 10) -> dict:
    overall = Counter(columns[attribute].tolist())
    keep = [value for value, _ in overall.most_common(top)]
    result = {}
    for label in labels:
        counts = Counter(columns[attribute][columns["label"] == label].tolist())
        row = {str(value): counts.get(value, 0) for value in keep}
        other = sum(counts.values()) - sum(row.values())
        if other:
            row["other"] = other
        result[label] = row
    return result


def dataset_stats(dataset_name: str | None = None, with_channel_stats: bool | None = False) -> dict:
    """The audit of one dataset (or of every image): see the module docstring.

    ``with_channel_stats`` True computes (or reuses) the training split's per-channel mean and
    standard deviation over the pixel cache; False only reports stored values; None computes
    them when the pass is cheap (a small cache).
    """
    columns = _columns(dataset_name)
    labels = [str(label) for label in CLASSES if (columns["label"] == label).any()]
    splits = {
        label: dict(Counter(columns["split"][columns["label"] == label].tolist()))
        for label in labels
    }
    stats = {
        "dataset": dataset_name,
        "n_images": int(len(columns["label"])),
        "classes": {label: int((columns["label"] == label).sum()) for label in labels},
        "splits": splits,
        "numeric": {
            attribute: {
                "histogram": _histogram(columns, attribute, labels),
                "summary": {
                    label: _summary(columns[attribute][columns["label"] == label])
                    for label in labels
                },
            }
            for attribute in NUMERIC
        },
        "categorical": {
            attribute: _categories(columns, attribute, labels) for attribute in CATEGORICAL
        },
        "area_outliers": area_outliers(columns["area"], columns["label"]),
        "shortcuts": shortcut_findings(columns),
    }
    ids = training_image_ids(dataset_name)
    size = current_app.config["CACHE_SIZE"]
    stats["channel_stats"] = channel_stats_entry(ids, size, compute=with_channel_stats)
    return stats


# --- Shortcut audit -------------------------------------------------------------------------


def _categorical_score(values: np.ndarray, is_fake: np.ndarray) -> tuple[float, str]:
    """Balanced accuracy of the best rule "value -> class" = 1/2 + 1/2 x total variation
    distance between the classes' value distributions (rare values pooled)."""
    counts = Counter(values.tolist())
    pooled = np.array([v if counts[v] >= MIN_CATEGORY else "other" for v in values], dtype=object)
    real, fake = pooled[~is_fake], pooled[is_fake]
    real_share, fake_share = Counter(real.tolist()), Counter(fake.tolist())
    categories = set(real_share) | set(fake_share)
    distance = 0.5 * sum(
        abs(real_share[c] / len(real) - fake_share[c] / len(fake)) for c in categories
    )
    return (
        0.5 + 0.5 * distance,
        f"real: {_top(real_share, len(real))}; fake: {_top(fake_share, len(fake))}",
    )


def _top(shares: Counter, total: int) -> str:
    return ", ".join(
        f"{value} {100 * count / total:.0f}%" for value, count in shares.most_common(3)
    )


def _numeric_score(values: np.ndarray, is_fake: np.ndarray) -> tuple[float, str]:
    """Balanced accuracy of the best single threshold = 1/2 + 1/2 x the Kolmogorov-Smirnov
    distance between the classes."""
    real, fake = np.sort(values[~is_fake]), np.sort(values[is_fake])
    grid = np.union1d(real, fake)
    cdf_real = np.searchsorted(real, grid, side="right") / len(real)
    cdf_fake = np.searchsorted(fake, grid, side="right") / len(fake)
    gaps = np.abs(cdf_real - cdf_fake)
    best = int(np.argmax(gaps))
    detail = (
        f"threshold {grid[best]:.4g}; real median {np.median(real):.4g}, "
        f"fake median {np.median(fake):.4g}"
    )
    return 0.5 + 0.5 * float(gaps[best]), detail


def shortcut_findings(columns: dict | None = None, dataset_name: str | None = None) -> list[dict]:
    """For each attribute group, the balanced accuracy a rule on that attribute alone reaches
    between real and fake, strongest member first; ``warning`` is set above the threshold."""
    columns = columns if columns is not None else _columns(dataset_name)
    labelled = np.isin(columns["label"], [Label.REAL, Label.FAKE])
    is_fake = columns["label"][labelled] == Label.FAKE
    if is_fake.sum() < MIN_PER_CLASS or (~is_fake).sum() < MIN_PER_CLASS:
        return []
    findings = []
    for group, attributes in SHORTCUT_GROUPS.items():
        scored = [_score(columns, attribute, labelled, is_fake) for attribute in attributes]
        scored = [s for s in scored if s is not None]
        if not scored:
            continue
        score, attribute, detail = max(scored, key=lambda item: item[0])
        findings.append(
            {
                "group": group,
                "attribute": attribute,
                "balanced_accuracy": round(score, 4),
                "detail": detail,
                "warning": score >= SHORTCUT_THRESHOLD,
            }
        )
    return sorted(findings, key=lambda finding: -finding["balanced_accuracy"])


def _score(columns, attribute, labelled, is_fake) -> tuple[float, str, str] | None:
    values = columns[attribute][labelled]
    if attribute in CATEGORICAL:
        score, detail = _categorical_score(values, is_fake)
        return score, attribute, detail
    known = ~np.isnan(values)
    fake_known, real_known = (known & is_fake).sum(), (known & ~is_fake).sum()
    if fake_known < MIN_PER_CLASS or real_known < MIN_PER_CLASS:
        return None
    score, detail = _numeric_score(values[known], is_fake[known])
    return score, attribute, detail


def shortcut_warnings(dataset_name: str | None = None, stats: dict | None = None) -> list[str]:
    """The shortcut audit as sentences: one per attribute that separates the classes."""
    findings = stats["shortcuts"] if stats is not None else shortcut_findings(None, dataset_name)
    return [
        f"{f['group']} separates real from fake: a rule on {f['attribute']} alone is right for "
        f"{100 * f['balanced_accuracy']:.0f}% of images (balanced accuracy; {f['detail']}). "
        "A detector can learn this instead of the content."
        for f in findings
        if f["warning"]
    ]


# --- Text -----------------------------------------------------------------------------------


def describe(stats: dict) -> list[str]:
    """The audit as lines of text for the terminal."""
    lines = [f"{stats['dataset'] or 'all datasets'}: {stats['n_images']} images"]
    for label, count in stats["classes"].items():
        splits = ", ".join(f"{k} {v}" for k, v in sorted(stats["splits"][label].items()))
        lines.append(f"  {label}: {count} ({splits})")
    for attribute in NUMERIC:
        for label, summary in stats["numeric"][attribute]["summary"].items():
            if summary:
                lines.append(
                    f"  {attribute:<12} {label:<7} median {summary['median']:g} "
                    f"[{summary['q1']:g} - {summary['q3']:g}], min {summary['min']:g}, "
                    f"max {summary['max']:g}"
                )
    outliers = stats["area_outliers"]
    if outliers["low"] is not None:
        lines.append(
            f"  area outliers (IQR rule, outside {outliers['low']:g} - {outliers['high']:g} px): "
            f"{outliers['count']} ({100 * outliers['fraction']:.1f}%)"
        )
    for attribute in ("format", "mode", "exif"):
        for label, counts in stats["categorical"][attribute].items():
            text = ", ".join(f"{k} {v}" for k, v in counts.items())
            lines.append(f"  {attribute:<12} {label:<7} {text}")
    channel = stats.get("channel_stats")
    if channel and channel["mean"]:
        mean = ", ".join(f"{m:.4f}" for m in channel["mean"])
        std = ", ".join(f"{s:.4f}" for s in channel["std"])
        lines.append(
            f"  training split ({channel['n_images']} images at {channel['size']} px): "
            f"mean [{mean}], std [{std}]"
        )
    warnings = shortcut_warnings(stats=stats)
    lines += [f"warning: {w}" for w in warnings] or [
        "shortcut audit: no attribute separates the classes"
    ]
    return lines
