"""An OpenAPI 3 document generated from the app itself.

Every rule under ``/api/v1`` becomes an operation: its path parameters come from the URL rule
(with the limits of its converter), its summary and description from the view's docstring, the
roles it needs from the auth decorators, and query parameters, request body, responses and error
statuses from ``@document(...)`` on the view. Bodies and responses are the pydantic models of
``webapp/services/api/schemas.py``, the same ones the view parses and serialises with, so the
schemas cannot drift from the code. A route added without any of that still appears, described
by its docstring, so the document cannot silently miss an endpoint.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from flask import Flask
from pydantic import BaseModel

from ...inputs import MAX_ID

API_PREFIX = "/api/v1"
RULE_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
CONVERTER_SCHEMAS = {
    "int": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
    "float": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
}
REF_TEMPLATE = "#/components/schemas/{model}"
NO_NUL = "^[^\\x00]*$"
"""The pattern of every free-text string: the app refuses a NUL in any text (``webapp.inputs``)."""
ERROR_MEANINGS = {
    400: "the request does not fit: the message names what is wrong",
    404: "nothing by that id or name",
    409: "conflicts with the current state (held by someone else, not finished, busy)",
    413: "the body is over the size limit",
    422: "well formed but unusable: the message says why (a file that is not a readable image)",
    429: "too many: wait (Retry-After) or let a job finish",
}


def document(
    query: list[dict[str, Any]] | None = None,
    body: type[BaseModel] | None = None,
    response: type[BaseModel] | list[type[BaseModel]] | dict[str, Any] | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    also: tuple[int, ...] = (),
    files: dict[str, str] | None = None,
) -> Callable:
    """Describe a view for the OpenAPI document.

    ``query``: parameters (:func:`query_param`); ``body``: the pydantic model the view parses
    its JSON body with; ``response``: the model it serialises with (in a list for an array), or
    a plain schema for a non-JSON answer; ``errors``: the error statuses it can answer besides
    401 and 403; ``also``: other success statuses with the same response (a replayed request's
    200 beside a new one's 201); ``files``: a multipart body's required file fields, by name with
    their description.
    """

    def attach(view: Callable) -> Callable:
        view.openapi = {
            "query": query or [],
            "body": body,
            "response": response,
            "status": status,
            "errors": errors,
            "also": also,
            "files": files or {},
        }
        return view

    return attach


def query_param(
    name: str, kind: str = "string", description: str = "", **limits: Any
) -> dict[str, Any]:
    """A query parameter for :func:`document`; ``limits`` (``minimum=1``, ``enum=[...]``) go
    into its schema."""
    return {"name": name, "schema": {"type": kind, **limits}, "description": description}


class Components:
    """The component schemas of the document, collected from the models the views name."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: str = "serialization") -> dict[str, str]:
        """A reference to ``model``'s schema, adding it and the models it uses."""
        if model.__name__ not in self.schemas:
            schema = model.model_json_schema(ref_template=REF_TEMPLATE, mode=mode)
            for name, definition in schema.pop("$defs", {}).items():
                self.schemas.setdefault(name, definition)
            self.schemas[model.__name__] = schema
        return {"$ref": REF_TEMPLATE.format(model=model.__name__)}

    def schema_of(self, response: Any) -> dict[str, Any]:
        """The schema of a ``response`` given to :func:`document`."""
        if isinstance(response, list):
            return {"type": "array", "items": self.ref(response[0])}
        if isinstance(response, type) and issubclass(response, BaseModel):
            return self.ref(response)
        return response


def openapi_path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """``/images/<int:image_id>`` -> ``/images/{image_id}`` and its path parameters."""
    parameters = []
    for match in RULE_ARGUMENT.finditer(rule):
        schema = CONVERTER_SCHEMAS.get(match.group("converter") or "", {"type": "string"})
        parameters.append(
            {"name": match.group("name"), "in": "path", "required": True, "schema": schema}
        )
    return RULE_ARGUMENT.sub(lambda m: "{" + m.group("name") + "}", rule), parameters


def _docstring(view: Callable) -> tuple[str, str]:
    """The first paragraph (as one line) and the rest."""
    text = inspect.getdoc(view) or ""
    summary, _, description = text.partition("\n\n")
    return " ".join(summary.split()), description.strip()


def _roles(view: Callable) -> list[str] | None:
    roles = getattr(view, "required_roles", None)
    if roles is None:
        return None
    return sorted({str(role) for role in roles} | {"admin"})


def _responses(spec: dict[str, Any], components: Components, roles) -> dict[str, Any]:
    """The success response and every error status the view documents."""
    from .schemas import Error

    success: dict[str, Any] = {"description": "OK"}
    if spec.get("response") is not None:
        schema = components.schema_of(spec["response"])
        binary = schema.get("format") == "binary"
        media = "application/octet-stream" if binary else "application/json"
        success["content"] = {media: {"schema": schema}}
    responses = {str(spec.get("status", 200)): success}
    for code in spec.get("also", ()):
        responses[str(code)] = {**success, "description": "OK (as before)"}
    error = {"content": {"application/json": {"schema": components.ref(Error)}}}
    if roles is not None:
        responses["401"] = {"description": "not logged in and no valid bearer token", **error}
        responses["403"] = {"description": f"needs role {' or '.join(roles)}", **error}
    for code in spec.get("errors", ()):
        responses[str(code)] = {"description": ERROR_MEANINGS[code], **error}
    return responses


def operation(
    endpoint: str, method: str, view: Callable, path_params: list, components: Components
) -> dict[str, Any]:
    """One OpenAPI operation for a view and HTTP method."""
    spec = getattr(view, "openapi", {})
    summary, description = _docstring(view)
    roles = _roles(view)
    if roles is not None:
        description = (description + f"\n\nRoles: {', '.join(roles)}.").strip()
    result: dict[str, Any] = {
        "operationId": f"{endpoint.replace('.', '_')}_{method.lower()}",
        "summary": summary or endpoint,
        "description": description,
        "tags": [endpoint.split(".")[0]],
        "parameters": path_params + [{"in": "query", **p} for p in spec.get("query", [])],
        "responses": _responses(spec, components, roles),
        "security": [{"bearer": []}, {"session": []}] if roles is not None else [],
        "x-roles": roles or [],
    }
    if spec.get("body") is not None:
        model = spec["body"]
        schema = components.ref(model, mode="validation")
        required = bool(model.model_json_schema().get("required")) or _root_required(model)
        result["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": schema}},
        }
    if spec.get("files"):
        fields = {
            name: {"type": "string", "format": "binary", "description": text}
            for name, text in spec["files"].items()
        }
        schema = {"type": "object", "properties": fields, "required": sorted(fields)}
        result["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    return result


def _root_required(model: type[BaseModel]) -> bool:
    """Whether a body model accepts no empty body (every branch of a union needs a field)."""
    schema = model.model_json_schema()
    branches = schema.get("anyOf") or []
    definitions = schema.get("$defs", {})
    return bool(branches) and all(
        definitions[branch["$ref"].rsplit("/", 1)[-1]].get("required") for branch in branches
    )


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every route under /api/v1."""
    paths: dict[str, dict[str, Any]] = {}
    components = Components()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(API_PREFIX):
            continue
        view = app.view_functions[rule.endpoint]
        path, parameters = openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = operation(
                rule.endpoint, method, view, parameters, components
            )
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "RealFake Review API",
            "version": "1",
            "description": "Send `Authorization: Bearer <token>` (tokens are made by an admin). "
            "State-changing calls with a browser session need a CSRF token instead.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session"},
            },
        },
    }
    _forbid_nul(document["paths"])
    _forbid_nul(document["components"]["schemas"])
    return document


def _forbid_nul(node: Any) -> None:
    """Give every string schema without a pattern, an enum, a constant or a format the
    :data:`NO_NUL` pattern, in place."""
    if isinstance(node, list):
        for item in node:
            _forbid_nul(item)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    is_string = kind == "string" or (isinstance(kind, list) and "string" in kind)
    if is_string and not {"pattern", "enum", "const", "format"} & set(node):
        node["pattern"] = NO_NUL
    for value in node.values():
        _forbid_nul(value)
