"""An OpenAPI 3 document generated from the app itself.

Every rule under ``/api/v1`` becomes an operation: its path parameters come from the URL rule,
its summary and description from the view's docstring, the roles it needs from the auth
decorators, and query parameters, request body and response schema from an optional
``@document(...)`` on the view. A route added without any of that still appears, described by
its docstring, so the document cannot silently miss an endpoint.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from flask import Flask

API_PREFIX = "/api/v1"
RULE_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
CONVERTER_SCHEMAS = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
}


def document(
    query: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    response: str | dict[str, Any] | None = None,
    status: int = 200,
) -> Callable:
    """Describe a view for the OpenAPI document.

    ``query``: parameters as ``{"name", "schema", "description"}``; ``body``: the JSON request
    schema; ``response``: a component name (``"Job"``) or a schema for the success response.
    """

    def attach(view: Callable) -> Callable:
        view.openapi = {"query": query or [], "body": body, "response": response, "status": status}
        return view

    return attach


def query_param(name: str, kind: str = "string", description: str = "") -> dict[str, Any]:
    """A query parameter description for :func:`document`."""
    return {"name": name, "schema": {"type": kind}, "description": description}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _page_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref(name)},
            "next_after": {"type": ["integer", "null"], "description": "pass as ?after="},
        },
    }


_NUMBER_OR_NULL = {"type": ["number", "null"]}
COMPONENTS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "status": {"type": "integer"},
        },
    },
    "Job": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "kind": {"type": "string"},
            "state": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
            "params": {"type": "object"},
            "progress": {"type": "object"},
            "result": {"type": ["object", "null"]},
            "error": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "Version": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "is_active": {"type": "boolean"},
            "kind": {"type": "string"},
            "metrics": {"type": "object"},
            "history": {"type": "array", "items": {"type": "object"}},
            "n_train": {"type": "integer"},
        },
    },
    "Image": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "sha256": {"type": "string"},
            "file_name": {"type": "string"},
            "dataset": {"type": "string"},
            "split": {"enum": ["train", "val", "test"]},
            "import_label": {"enum": ["real", "fake", "unknown"]},
            "label": {"enum": ["real", "fake", "unknown", "unsure"]},
        },
    },
    "Prediction": {
        "type": "object",
        "properties": {
            "image_id": {"type": "integer"},
            "version": {"type": "string"},
            "p_fake": {"type": "number"},
            "verdict": {"enum": ["real", "fake"]},
            "ood_score": _NUMBER_OR_NULL,
            "label_issue_score": _NUMBER_OR_NULL,
        },
    },
    "Decision": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "image_id": {"type": "integer"},
            "reviewer": {"type": "string"},
            "choice": {"enum": ["real", "fake", "unsure", "skip", "undo"]},
            "note": {"type": "string"},
            "version": {"type": ["string", "null"]},
            "reverts_id": {"type": ["integer", "null"]},
            "at": {"type": "string", "format": "date-time"},
        },
    },
}
for _name in ("Image", "Prediction", "Decision", "Job"):
    COMPONENTS[f"{_name}Page"] = _page_of(_name)


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


def _success(spec: dict[str, Any]) -> dict[str, Any]:
    response = spec.get("response")
    status = str(spec.get("status", 200))
    if response is None:
        return {status: {"description": "OK"}}
    schema = _ref(response) if isinstance(response, str) else response
    return {status: {"description": "OK", "content": {"application/json": {"schema": schema}}}}


def operation(endpoint: str, method: str, view: Callable, path_params: list) -> dict[str, Any]:
    """One OpenAPI operation for a view and HTTP method."""
    spec = getattr(view, "openapi", {})
    summary, description = _docstring(view)
    roles = _roles(view)
    error = {"content": {"application/json": {"schema": _ref("Error")}}}
    responses = _success(spec)
    if roles is not None:
        responses["401"] = {"description": "not logged in and no valid bearer token", **error}
        responses["403"] = {"description": f"needs role {' or '.join(roles)}", **error}
        description = (description + f"\n\nRoles: {', '.join(roles)}.").strip()
    query = [{"in": "query", **param} for param in spec.get("query", [])]
    result: dict[str, Any] = {
        "operationId": f"{endpoint.replace('.', '_')}_{method.lower()}",
        "summary": summary or endpoint,
        "description": description,
        "tags": [endpoint.split(".")[0]],
        "parameters": path_params + query,
        "responses": responses,
        "security": [{"bearer": []}, {"session": []}] if roles is not None else [],
        "x-roles": roles or [],
    }
    if spec.get("body"):
        result["requestBody"] = {"content": {"application/json": {"schema": spec["body"]}}}
    return result


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every route under /api/v1."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(API_PREFIX):
            continue
        view = app.view_functions[rule.endpoint]
        path, parameters = openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = operation(
                rule.endpoint, method, view, parameters
            )
    return {
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
            "schemas": COMPONENTS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session"},
            },
        },
    }
