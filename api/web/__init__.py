"""The web page served by `pixql serve`: review queue, SQL console, concept labelling.

Server-rendered Jinja2 shells (`templates/`) plus plain JavaScript and CSS
(`static/`), all served from this package (no CDN).  The page holds no data of
its own: the browser keeps the API token for the session and calls the same
HTTP API, with the same `Authorization: Bearer <client_id>:<client_secret>`,
that every other client uses.
"""
from .router import router

__all__ = ["router"]
