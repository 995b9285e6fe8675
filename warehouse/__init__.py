"""PixQL's storage core: layout, catalog, views and `WarehouseCore`.

`warehouse` imports none of PixQL's other packages.  The one exception is the
name `Warehouse`: it is the user-facing facade (`pixql.Warehouse`, which adds
ingest and concepts on top of `WarehouseCore`), re-exported here lazily so the
documented entry point `from warehouse import Warehouse` keeps working.  It is
resolved on first access by the module `__getattr__` below, never at import
time, so importing any `warehouse` module pulls in nothing from above.  Code
inside PixQL imports `warehouse.core.WarehouseCore` or `pixql.Warehouse`
directly; tests/test_layers.py enforces both rules.
"""
from .core import WarehouseCore

__all__ = ["Warehouse", "WarehouseCore"]


def __getattr__(name: str):
    if name == "Warehouse":  # the only upward reference in the package (see the docstring)
        from pixql import Warehouse

        return Warehouse
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
