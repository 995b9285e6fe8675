"""Column provider for the user views; see `views.ViewParts` for the contract.

Compiles catalog rows into SQL; it never imports code from outside `warehouse`.
"""
from __future__ import annotations

from .views import ViewParts


def contribute(con, root) -> ViewParts:
    return ViewParts()
