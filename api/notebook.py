"""`show(df)`: a DataFrame as an HTML table with image thumbnails, for notebooks.

Thumbnails are embedded as data URIs, so the notebook renders them after the
server is gone.  With a `client`, rows with a `coactive_image_id` get the
server's thumbnail (`GET /api/v1/assets/{id}/thumbnail`); otherwise a `path`
column pointing at a readable local file is thumbnailed locally.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path


class HTMLTable:
    """Rendered by Jupyter through `_repr_html_`; `.html` is the markup."""

    def __init__(self, markup: str):
        self.html = markup

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html


def _local_thumbnail(path: str, size: int) -> bytes | None:
    try:
        from PIL import Image, ImageOps

        p = Path(path)
        if not p.is_file():
            return None
        with Image.open(p) as im:
            im.draft("RGB", (size * 2, size * 2))
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
            return buf.getvalue()
    except Exception:  # not an image we can open (a video, a remote path): no thumbnail
        return None


def _rows(df) -> tuple[list[str], list[dict]]:
    if hasattr(df, "to_dicts"):  # polars
        return list(df.columns), df.to_dicts()
    if hasattr(df, "to_dict"):  # pandas
        return [str(c) for c in df.columns], df.to_dict(orient="records")
    raise TypeError(f"show() takes a polars or pandas DataFrame, not {type(df).__name__}")


def show(df, client=None, size: int = 128, max_rows: int = 200, image_column: str = "image") -> HTMLTable:
    """Render `df` with a thumbnail column first; at most `max_rows` rows."""
    columns, rows = _rows(df)
    total = len(rows)
    rows = rows[:max_rows]
    has_id = "coactive_image_id" in columns and client is not None
    has_path = "path" in columns
    out = ['<table class="pixql-show" style="border-collapse:collapse">', "<thead><tr>"]
    if has_id or has_path:
        out.append(f"<th>{html.escape(image_column)}</th>")
    out += [f"<th>{html.escape(str(c))}</th>" for c in columns]
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>")
        if has_id or has_path:
            data = None
            if has_id and r.get("coactive_image_id"):
                try:
                    data = client.thumbnail(str(r["coactive_image_id"]), size=size)
                except Exception:
                    data = None
            if data is None and has_path and r.get("path"):
                data = _local_thumbnail(str(r["path"]), size)
            if data:
                uri = "data:image/jpeg;base64," + base64.b64encode(data).decode()
                out.append(f'<td><img src="{uri}" style="max-width:{size}px;max-height:{size}px"></td>')
            else:
                out.append("<td></td>")
        for c in columns:
            v = r.get(c)
            out.append(f"<td>{'' if v is None else html.escape(str(v))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    if total > max_rows:
        out.append(f"<p>{max_rows} of {total} rows shown</p>")
    return HTMLTable("".join(out))
