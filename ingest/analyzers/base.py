"""The analyzer contract: images in, one dict of column values per image out."""
from __future__ import annotations

import pyarrow as pa
from PIL import Image

from warehouse.errors import Invalid

# Analyzers see at most this long side: enough detail for OCR and small faces,
# bounded memory for a batch of keyframes.
ANALYSIS_MAX_SIDE = 1280


class AnalyzerUnavailable(Invalid):
    """The analyzer's package is not installed; the message says how to install it."""


class Analyzer:
    """Subclasses set `name`, `version`, `schema` (Arrow fields besides the id),
    `sql_types` (the same columns as DuckDB types) and implement `analyze`."""

    name: str
    version: str
    schema: pa.Schema
    sql_types: dict[str, str]

    def analyze(self, images: list[Image.Image]) -> list[dict]:
        raise NotImplementedError

    def part_schema(self) -> pa.Schema:
        return pa.schema([pa.field("coactive_image_id", pa.string()), *self.schema])


def package_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{dist}=={version(dist)}"
    except PackageNotFoundError:
        return dist
