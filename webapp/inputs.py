"""Checked input from URLs, query strings and JSON bodies: what a fuzzer sends gets a 400 or a 404
that says what is wrong, never a 500.

Database ids are 64-bit integers: a larger number in a path can name nothing (404), in a query
string it is a mistake (400). Text never holds a NUL character (PostgreSQL's text cannot, and no
name, note or filter needs one): one in the path, the query string or a form (a multipart
body's file names too) is a 400 before any view runs, one in a JSON body a 400 when it is
parsed; the OpenAPI document says so with a pattern on every free-text string. JSON nested
deeper than the parser's recursion limit is refused like any other malformed body. The fields
of JSON bodies are checked by the API's pydantic models (``webapp/services/api/schemas.py``).
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, abort, request
from flask.json.provider import DefaultJSONProvider
from flask_login import current_user
from werkzeug.routing import IntegerConverter

# Every key is an INTEGER column: 32 bits on PostgreSQL, so a larger id can name nothing (and
# PostgreSQL refuses to compare with it).
MAX_ID = 2**31 - 1
WHOLE_NUMBER = re.compile(r"-?[0-9]{1,20}")


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


NUL = "\x00"
NO_NUL_CHARACTER = "may not contain a NUL (0x00) character"


def init_app(app: Flask) -> None:
    """Bounded ``int`` URL converter, the guarded JSON parser and the NUL check; before routes
    are added."""
    app.url_map.converters["int"] = IdConverter
    app.json_provider_class = GuardedJSONProvider
    app.json = GuardedJSONProvider(app)
    app.before_request(refuse_nul_in_text)


def init_uploads(app: Flask) -> None:
    """The NUL check of multipart bodies; after the users are known (``auth.init_app``)."""
    app.before_request(refuse_nul_in_uploads)


def refuse_nul_in_text() -> None:
    """400 for a NUL character in the path, the query string or a plain form's fields (names
    and values)."""
    if NUL in request.path:
        abort(400, description=f"the path {NO_NUL_CHARACTER}")
    for name, value in request.args.items(multi=True):
        if NUL in name or NUL in value:
            abort(400, description=f"the query string {NO_NUL_CHARACTER}")
    if request.mimetype == "application/x-www-form-urlencoded":
        _refuse_nul_in_form()


def refuse_nul_in_uploads() -> None:
    """400 for a NUL character in a multipart body's fields or its files' names (the files'
    bytes are not text). Only for a known user: parsing an upload (up to
    ``MAX_CONTENT_LENGTH``) before the view answers an anonymous request's 401 would be work
    for anyone to ask for."""
    if request.mimetype == "multipart/form-data" and current_user.is_authenticated:
        _refuse_nul_in_form()
        for field, upload in request.files.items(multi=True):  # a part may lack a name: None
            if NUL in (field or "") or NUL in (upload.filename or ""):
                abort(400, description=f"the name of an uploaded file {NO_NUL_CHARACTER}")


def _refuse_nul_in_form() -> None:
    for name, value in request.form.items(multi=True):
        if NUL in (name or "") or NUL in (value or ""):
            abort(400, description=f"the form {NO_NUL_CHARACTER}")


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def parse_int(raw: str, name: str, low: int = 0, high: int | None = MAX_ID) -> int:
    """A whole number written in ``raw`` within [low, high]; 400 saying why otherwise."""
    text = raw.strip()
    if not WHOLE_NUMBER.fullmatch(text):
        abort(400, description=f"{name} must be a whole number, not {raw[:40]!r}")
    return check_range(int(text), name, low, high)


def check_range(number: int, name: str, low: int, high: int | None) -> int:
    """``number`` when low <= number <= high; 400 naming the bounds otherwise."""
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        abort(400, description=f"{name} must be {bounds}")
    return number


def int_arg(
    name: str,
    default: int | None,
    low: int = 0,
    high: int | None = MAX_ID,
    blank_is_absent: bool = True,
) -> int | None:
    """The query argument ``name`` as a checked whole number; ``default`` when absent (or blank,
    as a page's empty form field sends it; the API, whose document says integer, refuses it)."""
    if name not in request.args:
        return default
    raw = request.args[name]
    if raw.strip() == "" and blank_is_absent:
        return default
    return parse_int(raw, name, low, high)


def json_object() -> dict[str, Any]:
    """The request's JSON object (an empty one when there is no body); 400 for anything else."""
    body = request.get_json(silent=True)
    if body is None and request.get_data(cache=True):
        abort(400, description="the body must be JSON (and not nested too deeply)")
    if body is not None and not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")
    if _holds_nul(body):
        abort(400, description=f"text in the body {NO_NUL_CHARACTER}")
    return body or {}
