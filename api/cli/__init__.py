"""The `pixql` command line.  One module per command group registers on `app`."""
from __future__ import annotations

from .app import app
from . import core  # noqa: F401  (registers commands)

for _optional in ("concepts", "serve", "video", "moderation", "erasure", "compact"):
    # Command groups added by later modules register themselves the same way.
    try:
        __import__(f"{__name__}.{_optional}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{_optional}":
            raise


def main() -> None:
    app()
