"""Errors for requests that name something missing, or ask what the current state forbids.

Both are ValueErrors (every caller that reports a bad request keeps working); the API answers
:class:`UnknownName` with 404 and :class:`StateConflict` with 409, so a well-formed request is
never called malformed (400) only because what it names does not exist (yet).
"""


class UnknownName(ValueError):
    """A dataset, model version or similar named in a request does not exist."""


class StateConflict(ValueError):
    """The request is well formed but the desk's state does not allow it now (no active model
    version yet, an evaluation-only dataset asked to train on)."""


def http_status(error: ValueError) -> int:
    """The HTTP status for a refused request: 404, 409, or 400 for any other ValueError."""
    if isinstance(error, UnknownName):
        return 404
    if isinstance(error, StateConflict):
        return 409
    return 400
