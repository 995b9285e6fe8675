"""PixQL's user-facing Python API, above the layers (warehouse, encoders, ingest, concepts).

    from pixql import Warehouse            # also: from warehouse import Warehouse
"""
from .sdk import Warehouse

__all__ = ["Warehouse"]
