"""Checked input from URLs, query strings and JSON bodies: what a fuzzer sends gets a 400 or a 404
that says what is wrong, never a 500.

Database ids are 64-bit integers: a larger number in a path can name nothing (404), in a query
string or body it is a mistake (400). JSON nested deeper than the parser's recursion limit is
refused like any other malformed body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, abort, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.routing import IntegerConverter

MAX_ID = 2**63 - 1


class IdConverter(IntegerConverter):
    """``<int:...>`` limited to what a 64-bit id column holds; larger numbers match no route."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False) -> None:  # noqa: A002
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


class GuardedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, where a body nested too deeply to parse is a ValueError (a 400), not a
    RecursionError (a 500)."""

    def loads(self, s, **kwargs):
        """Parse JSON text."""
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None


def init_app(app: Flask) -> None:
    """Bounded ``int`` URL converter and the guarded JSON parser; before routes are added."""
    app.url_map.converters["int"] = IdConverter
    app.json_provider_class = GuardedJSONProvider
    app.json = GuardedJSONProvider(app)


def parse_int(raw: str, name: str, low: int = 0, high: int | None = MAX_ID) -> int:
    """A whole number written in ``raw`` within [low, high]; 400 saying why otherwise."""
    text = raw.strip()
    if not text.lstrip("-").isdigit() or len(text) > 20:
        abort(400, description=f"{name} must be a whole number, not {raw[:40]!r}")
    return check_range(int(text), name, low, high)


def check_range(number: int, name: str, low: int, high: int | None) -> int:
    """``number`` when low <= number <= high; 400 naming the bounds otherwise."""
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        abort(400, description=f"{name} must be {bounds}")
    return number


def int_arg(name: str, default: int | None, low: int = 0, high: int | None = MAX_ID) -> int | None:
    """The query argument ``name`` as a checked whole number; ``default`` when absent or blank."""
    raw = request.args.get(name, "")
    if raw.strip() == "":
        return default
    return parse_int(raw, name, low, high)


def int_field(body: Mapping[str, Any], name: str, low: int = 1, high: int | None = MAX_ID) -> int:
    """The JSON field ``name`` as a checked integer (booleans and numbers in strings refused)."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        abort(400, description=f"{name} must be an integer id")
    return check_range(value, name, low, high)


def int_list(body: Mapping[str, Any], name: str) -> list[int] | None:
    """The JSON field ``name`` as a list of ids, or None when absent; 400 for anything else."""
    value = body.get(name)
    if value is None:
        return None
    ids_ok = isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) and 1 <= item <= MAX_ID
        for item in value
    )
    if not ids_ok:
        abort(400, description=f"{name} must be a list of image ids")
    return value


def str_field(body: Mapping[str, Any], name: str, default: str = "") -> str:
    """The JSON field ``name`` as text; absent or null gives ``default``; other types a 400."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        abort(400, description=f"{name} must be a string")
    return value


def object_field(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The JSON field ``name`` as an object (empty when absent or null); 400 otherwise."""
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        abort(400, description=f"{name} must be a JSON object")
    return value


def json_object() -> dict[str, Any]:
    """The request's JSON object (an empty one when there is no body); 400 for anything else."""
    body = request.get_json(silent=True)
    if body is None and request.get_data(cache=True):
        abort(400, description="the body must be JSON (and not nested too deeply)")
    if body is not None and not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")
    return body or {}
