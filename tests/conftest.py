"""Shared fixtures: real photos from scikit-image/scikit-learn, and warehouses built from them."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """The bundled photos (chelsea, coffee, astronaut, ... plus sklearn's china/flower) as files."""
    from api.cli.demo import write_demo_images

    d = tmp_path_factory.mktemp("photos")
    write_demo_images(d)
    return d


@pytest.fixture(scope="session")
def photo_warehouse(tmp_path_factory, photo_dir):
    """A warehouse holding the bundled photos, ingested once per session (read it, don't change it)."""
    from warehouse import Warehouse

    root = tmp_path_factory.mktemp("wh-photos")
    wh = Warehouse.open(root)
    wh.ingest([str(photo_dir)], dataset="photos", progress=False)
    yield wh
    wh.close()


@pytest.fixture
def fresh_root(tmp_path) -> Path:
    return tmp_path / "pixql-data"


def copy_photos(src: Path, dst: Path, names=None) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.iterdir()):
        if names is None or p.stem in names:
            shutil.copy(p, dst / p.name)
    return dst


@pytest.fixture(scope="session")
def api_server(tmp_path_factory, photo_dir):
    """`pixql serve` as a subprocess on 127.0.0.1, photos ingested over HTTP; `.tokens[scope]`."""
    from apiserver import start_photo_server

    # Loopback is allowed for URL fetching: the tests' own image servers listen on 127.0.0.1.
    srv = start_photo_server(tmp_path_factory.mktemp("api"), photo_dir, "--allow-url-network", "127.0.0.0/8")
    yield srv
    srv.stop()
