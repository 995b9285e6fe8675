"""PixQL's storage core: layout, catalog, views, and the `Warehouse` SDK."""
from .sdk import Warehouse

__all__ = ["Warehouse"]
