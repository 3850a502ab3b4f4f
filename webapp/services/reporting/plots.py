"""Small charts drawn as inline SVG on the server: no plotting library, no script, works offline.

Each function returns ``Markup`` ready to drop into a template. Values that are missing (None,
NaN) are skipped rather than drawn as zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04")
CLASS_NAMES = ("real", "fake")


def color(index: int) -> str:
    """The series colour for the ``index``-th line (cycles through the palette)."""
    return PALETTE[index % len(PALETTE)]


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


@dataclass
class Frame:
    """A plotting area: data ranges mapped onto a rectangle of the SVG."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float
    left: float = 46
    top: float = 28
    width: float = 250
    height: float = 170

    def x(self, value: float) -> float:
        span = (self.x_max - self.x_min) or 1.0
        return self.left + (value - self.x_min) / span * self.width

    def y(self, value: float) -> float:
        span = (self.y_max - self.y_min) or 1.0
        return self.top + self.height - (value - self.y_min) / span * self.height

    def axes(self, x_label: str, y_label: str, x_ticks, y_ticks) -> list[str]:
        """The frame, grid lines, tick labels and axis titles."""
        bottom, right = self.top + self.height, self.left + self.width
        parts = [
            f'<rect x="{self.left}" y="{self.top}" width="{self.width}" height="{self.height}" '
            'fill="#fff" stroke="#9ca3af"/>'
        ]
        for tick in x_ticks:
            x = self.x(tick)
            parts.append(
                f'<line x1="{x:.1f}" y1="{self.top}" x2="{x:.1f}" y2="{bottom}" stroke="#eee"/>'
                f'<text x="{x:.1f}" y="{bottom + 13}" text-anchor="middle">{_tick(tick)}</text>'
            )
        for tick in y_ticks:
            y = self.y(tick)
            parts.append(
                f'<line x1="{self.left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#eee"/>'
                f'<text x="{self.left - 4}" y="{y + 3:.1f}" text-anchor="end">{_tick(tick)}</text>'
            )
        parts.append(
            f'<text x="{self.left + self.width / 2}" y="{bottom + 28}" '
            f'text-anchor="middle">{escape(x_label)}</text>'
            f'<text transform="translate({self.left - 34} {self.top + self.height / 2}) '
            'rotate(-90)" '
            f'text-anchor="middle">{escape(y_label)}</text>'
        )
        return parts

    def polyline(self, points: Sequence[tuple[float, float]], stroke: str, dash: str = "") -> str:
        """A line through ``points`` (data coordinates)."""
        coordinates = " ".join(f"{self.x(x):.1f},{self.y(y):.1f}" for x, y in points)
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        return (
            f'<polyline points="{coordinates}" fill="none" stroke="{stroke}" '
            f'stroke-width="1.8"{dashes}/>'
        )


def _tick(value: float) -> str:
    return f"{value:g}" if abs(value) >= 0.01 or value == 0 else f"{value:.0e}"


def _svg(body: Sequence[str], title: str, width: int = 310, height: int = 240) -> Markup:
    heading = (
        f'<text x="{width / 2}" y="15" text-anchor="middle" '
        f'font-weight="600">{escape(title)}</text>'
    )
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" font-family="system-ui, sans-serif" font-size="10">'
        f"<title>{escape(title)}</title>{heading}{''.join(body)}</svg>"
    )


def _legend(
    names: Sequence[str], frame: Frame, dashed: Sequence[bool] | None = None, ink: str = ""
) -> list[str]:
    parts = []
    for index, name in enumerate(names):
        y = frame.top + 10 + index * 12
        x = frame.left + frame.width + 6
        dash = ' stroke-dasharray="4 3"' if dashed and dashed[index] else ""
        parts.append(
            f'<line x1="{x}" y1="{y - 3}" x2="{x + 14}" y2="{y - 3}" '
            f'stroke="{ink or color(index)}" stroke-width="2"{dash}/>'
            f'<text x="{x + 18}" y="{y}">{escape(name)}</text>'
        )
    return parts


def _unit_ticks() -> list[float]:
    return [0.0, 0.25, 0.5, 0.75, 1.0]


def confusion_matrix_svg(
    matrix: Sequence[Sequence[int]] | None, title: str = "Confusion"
) -> Markup:
    """A 2x2 heatmap: rows are the true class, columns the verdict; shade is the row's share."""
    if not matrix:
        return _svg(['<text x="20" y="60">no labelled images</text>'], title, 230, 90)
    size, left, top = 70, 70, 40
    parts = []
    for row, true_name in enumerate(CLASS_NAMES):
        total = sum(matrix[row]) or 1
        parts.append(
            f'<text x="{left - 6}" y="{top + row * size + size / 2 + 3}" '
            f'text-anchor="end">true {true_name}</text>'
        )
        for column, predicted_name in enumerate(CLASS_NAMES):
            count = int(matrix[row][column])
            share = count / total
            x, y = left + column * size, top + row * size
            ink = "#fff" if share > 0.55 else "#111"
            parts.append(
                f'<rect x="{x}" y="{y}" width="{size}" height="{size}" stroke="#fff" '
                f'fill="rgba(37,99,235,{0.08 + 0.87 * share:.3f})">'
                f"<title>true {true_name}, called {predicted_name}: {count}</title></rect>"
                f'<text x="{x + size / 2}" y="{y + size / 2}" text-anchor="middle" '
                f'fill="{ink}" font-size="14">{count}</text>'
                f'<text x="{x + size / 2}" y="{y + size / 2 + 14}" text-anchor="middle" '
                f'fill="{ink}">{share:.0%}</text>'
            )
    for column, predicted_name in enumerate(CLASS_NAMES):
        parts.append(
            f'<text x="{left + column * size + size / 2}" y="{top - 6}" '
            f'text-anchor="middle">called {predicted_name}</text>'
        )
    return _svg(parts, title, left + 2 * size + 20, top + 2 * size + 12)


def reliability_svg(
    curves: Sequence[tuple[str, dict | None]], title: str = "Reliability"
) -> Markup:
    """Mean p_fake per bin against the fraction really fake, one line per named curve."""
    frame = Frame(0.0, 1.0, 0.0, 1.0)
    parts = frame.axes("mean p_fake", "fraction fake", _unit_ticks(), _unit_ticks())
    parts.append(frame.polyline([(0, 0), (1, 1)], "#9ca3af", "3 3"))
    for index, (_name, curve) in enumerate(curves):
        if not curve:
            continue
        points = [
            (x, y)
            for x, y in zip(curve["mean_p_fake"], curve["fraction_fake"], strict=True)
            if _number(x) is not None and _number(y) is not None
        ]
        parts.append(frame.polyline(points, color(index)))
        for x, y in points:
            parts.append(
                f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2.5" '
                f'fill="{color(index)}"/>'
            )
    parts += _legend([name for name, _ in curves], frame)
    return _svg(parts, title, 390)


def roc_svg(curves: Sequence[tuple[str, dict | None, float | None]], title: str = "ROC") -> Markup:
    """True against false positive rate (FAKE is positive), one line per version, AUC in legend."""
    frame = Frame(0.0, 1.0, 0.0, 1.0)
    parts = frame.axes("false positive rate", "true positive rate", _unit_ticks(), _unit_ticks())
    parts.append(frame.polyline([(0, 0), (1, 1)], "#9ca3af", "3 3"))
    names = []
    for index, (name, points, auc) in enumerate(curves):
        auc_value = _number(auc)
        names.append(f"{name} {auc_value:.3f}" if auc_value is not None else f"{name} n/a")
        if points:
            parts.append(
                frame.polyline(list(zip(points["fpr"], points["tpr"], strict=True)), color(index))
            )
            parts.append(_operating_point_marker(frame, name, points, color(index)))
    parts += _legend(names, frame)
    return _svg(parts, title, 400)


def _operating_point_marker(frame: Frame, name: str, points: dict, stroke: str) -> str:
    """A dot at the version's operating point (its threshold's FPR and TPR), when known."""
    point = points.get("operating_point") or {}
    fpr, tpr, threshold = (_number(point.get(key)) for key in ("fpr", "tpr", "threshold"))
    if fpr is None or tpr is None or threshold is None:
        return ""
    label = f"{name} at threshold {threshold:.3f}: FPR {fpr:.3f}, TPR {tpr:.3f}"
    return (
        f'<circle class="operating-point" cx="{frame.x(fpr):.1f}" cy="{frame.y(tpr):.1f}" r="4" '
        f'fill="{stroke}" stroke="#111"><title>{escape(label)}</title></circle>'
    )


def _series(history: Sequence[dict], key: str) -> list[tuple[float, float]]:
    points = []
    for row in history:
        epoch, value = _number(row.get("epoch")), _number(row.get(key))
        if epoch is not None and value is not None:
            points.append((epoch, value))
    return points


def _epoch_ticks(last: float) -> list[float]:
    step = max(1, math.ceil(last / 6))
    return [float(e) for e in range(0, int(last) + 1, step)]


def training_curves_svg(history: Sequence[dict] | None, title: str = "Training") -> Markup:
    """Loss and accuracy per epoch (train solid, validation dashed), side by side."""
    history = history or []
    if not history:
        return _svg(['<text x="20" y="60">no training history</text>'], title, 230, 90)
    last = max(_number(row.get("epoch")) or 0 for row in history) or 1
    parts: list[str] = []
    for offset, (metric, keys, y_label) in enumerate(
        (
            ("loss", ("train_loss", "val_loss"), "loss"),
            ("accuracy", ("train_acc", "val_acc"), "accuracy"),
        )
    ):
        series = [_series(history, key) for key in keys]
        values = [y for points in series for _, y in points]
        top = max(values) if values else 1.0
        if metric == "accuracy":
            y_max, y_ticks = 1.0, _unit_ticks()
        else:
            y_max = top * 1.1 or 1.0
            y_ticks = [round(y_max * i / 4, 3) for i in range(5)]
        frame = Frame(0.0, float(last), 0.0, y_max, left=46 + offset * 260, width=190)
        parts += frame.axes("epoch", y_label, _epoch_ticks(last), y_ticks)
        for index, points in enumerate(series):
            stroke = color(0 if metric == "loss" else 2)
            parts.append(frame.polyline(points, stroke, "" if index == 0 else "4 3"))
            # Dots too: one epoch is one point, which no line can draw.
            fill = stroke if index == 0 else "#fff"
            parts += [
                f'<circle class="epoch-point" cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" '
                f'r="2.5" fill="{fill}" stroke="{stroke}"/>'
                for x, y in points
            ]
    legend = Frame(0, 1, 0, 1, left=46 + 450, width=0)
    parts += _legend(["train", "val"], legend, dashed=[False, True], ink="#4b5563")
    return _svg(parts, title, 560)
