"""PixQL's faces: the HTTP API (FastAPI), its Python client, the CLI and the web page."""
