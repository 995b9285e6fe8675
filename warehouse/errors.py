"""The one error hierarchy: every failure a user can act on is a `PixqlError` of one kind.

It lives in the lowest layer so that `warehouse`, `encoders`, `ingest`, `concepts`
and `api` all raise the same kinds; each module's own classes (`SandboxError`,
`QueryNotFound`, `ConceptError`, ...) subclass one of them and keep their
builtin base too (`Invalid` is a `ValueError`, `NotFound` a `KeyError`...), so
older `except ValueError` callers still work.

`KINDS` is the one table from kind to HTTP status (api/server/errors.py) and CLI
exit code (api/cli/app.py).  An exception outside the hierarchy is a bug: a 500
with a logged traceback over HTTP, an `internal error` line (exit 70) in the CLI.
A bare `PixqlError` (e.g. a query worker that died) is a failure of the server,
not of the request: 500 with a generic message, but its message in the CLI.
"""
from __future__ import annotations

from dataclasses import dataclass


class PixqlError(Exception):
    """Base of every error PixQL raises on purpose."""


class Invalid(PixqlError, ValueError):
    """Bad input: the request or argument cannot be done as given."""


class Unauthorized(PixqlError):
    """No credentials, or wrong ones."""


class Forbidden(PixqlError, PermissionError):
    """Known caller, not allowed (scope, read-only warehouse, a path outside the allowed roots)."""

    def __str__(self) -> str:  # OSError would print "[Errno None] ..." for two arguments
        return Exception.__str__(self)


class NotFound(PixqlError, KeyError):
    """An id, name or file the request names does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


class MissingFile(NotFound, FileNotFoundError):
    """A file the request names is not there (still a FileNotFoundError for OSError callers)."""


class Gone(NotFound):
    """It existed and was removed on purpose (erased, withdrawn, expired); the message says why."""


class Blocked(Forbidden):
    """Content a `block` tombstone refuses (it was erased and must not come back)."""


class Conflict(PixqlError, RuntimeError):
    """The request does not fit the current state (stopping a finished query, a busy delivery)."""


class TooLarge(Invalid):
    """The request is over a size or count limit."""


class Unprocessable(PixqlError):
    """The input is well-formed but its content cannot be used (a corrupt image)."""


class TooMany(PixqlError, RuntimeError):
    """Over a rate or queue limit; try again shortly."""


class Unavailable(PixqlError, RuntimeError):
    """Not ready or shutting down; try again shortly."""


@dataclass(frozen=True)
class Kind:
    status: int  # HTTP status
    exit_code: int  # CLI exit code
    retry_after: bool = False  # the HTTP answer says Retry-After: 1


EXIT_USER = 1  # the CLI's exit code for anything the user can fix
EXIT_INTERNAL = 70  # sysexits EX_SOFTWARE: a bug, not bad input

# Most specific first: `kind_of` takes the first row the exception is an instance of, so a
# class under two kinds (ConceptNotFound is a ConceptError and a NotFound) gets the earlier.
KINDS: dict[type[PixqlError], Kind] = {
    Unauthorized: Kind(401, EXIT_USER),
    Gone: Kind(410, EXIT_USER),
    Forbidden: Kind(403, EXIT_USER),
    NotFound: Kind(404, EXIT_USER),
    Conflict: Kind(409, EXIT_USER),
    TooLarge: Kind(413, EXIT_USER),
    Unprocessable: Kind(422, EXIT_USER),
    TooMany: Kind(429, EXIT_USER, retry_after=True),
    Unavailable: Kind(503, EXIT_USER, retry_after=True),
    Invalid: Kind(400, EXIT_USER),
    PixqlError: Kind(500, EXIT_USER),
}


def kind_of(e: BaseException | type) -> Kind | None:
    """The row of `KINDS` for an exception (or class); None outside the hierarchy."""
    cls = e if isinstance(e, type) else type(e)
    for base, kind in KINDS.items():
        if issubclass(cls, base):
            return kind
    return None
