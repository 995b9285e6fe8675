"""Small defects found by probing (issue 10 item 8, issue 11 item 10): each is now a clear error.

Thumbnails, the encoder check on ingestion and the settings run in-process
(FastAPI's TestClient on a real warehouse); the CLI through typer's CliRunner or
a subprocess; `Client.candidates` through a real `pixql serve`.
"""
from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from videogen import make_video, rotate_mp4

runner = CliRunner()


def _cli(*args: str, **kw):
    from api.cli import app

    return runner.invoke(app, list(args), **kw)


def _one_clear_line(result) -> str:
    out = result.output.strip()
    assert "Traceback" not in out, out
    assert out.startswith("error: ") and len(out.splitlines()) == 1, out
    return out


# -- thumbnails: the decode path of ingest, and a reason for a file that no longer decodes ----------
@pytest.fixture(scope="module")
def media(tmp_path_factory, photo_dir):
    """A warehouse with a portrait video (landscape frames + display matrix), an EXIF-rotated
    JPEG, two plain photos (one gets corrupted by a test) and a file that never decoded."""
    from warehouse import Warehouse

    base = tmp_path_factory.mktemp("media")
    src = base / "in"
    src.mkdir()
    plain = make_video(base / "plain.mp4", seconds=2, width=160, height=120)
    rotate_mp4(plain, src / "portrait.mp4")
    landscape = Image.open(photo_dir / "chelsea.png").convert("RGB")  # wider than tall
    assert landscape.width > landscape.height
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    landscape.save(src / "turned.jpg", exif=exif.tobytes())
    landscape.save(src / "to-corrupt.jpg")
    Image.open(photo_dir / "coffee.png").convert("RGB").save(src / "to-delete.jpg")
    (src / "junk.jpg").write_bytes(b"not an image at all")
    root = base / "wh"
    with Warehouse.open(root) as wh:
        wh.ingest([str(src)], dataset="media", progress=False, video_options={"fps": 1.0, "max_frames": 2})
        rows = wh.cursor().execute(
            "SELECT path, coactive_image_id, media_type, width, height, keyframe_time_ms"
            " FROM pixql_internal.assets ORDER BY path, keyframe_index").fetchall()
    ids = {}
    for path, aid, kind, w, h, t in rows:
        ids.setdefault(Path(path).name, []).append({"id": aid, "kind": kind, "width": w, "height": h, "t": t})
    return {"root": root, "src": src, "ids": ids}


@pytest.fixture
def http(media):
    from fastapi.testclient import TestClient

    from api.server import ServerSettings, create_app

    settings = ServerSettings(root=media["root"], auth=False, load_model=False)
    with TestClient(create_app(settings)) as client:
        yield client


def _thumb(http, asset_id: str, size: int = 128) -> Image.Image:
    r = http.get(f"/api/v1/assets/{asset_id}/thumbnail", params={"size": size})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    return Image.open(io.BytesIO(r.content))


def test_rotated_keyframe_thumbnail_is_portrait_and_matches_ingest(http, media):
    from ingest.sources import Source
    from ingest.video import read_keyframes

    frames = media["ids"]["portrait.mp4"]
    assert [f["kind"] for f in frames] == ["keyframe", "keyframe"]
    assert (frames[0]["width"], frames[0]["height"]) == (120, 160)  # ingest turned it upright
    stored, _ = read_keyframes(Source(media["src"] / "portrait.mp4"), "media", fps=1.0, max_frames=2)
    for f, ingested in zip(frames, stored):
        thumb = _thumb(http, f["id"], size=128)
        assert thumb.size == (96, 128)  # portrait, like the stored keyframe
        expected = np.asarray(ingested.image.resize(thumb.size), dtype=np.int16)
        got = np.asarray(thumb.convert("RGB"), dtype=np.int16)
        assert np.abs(got - expected).mean() < 8  # the same picture, up to JPEG
        unturned = np.asarray(ingested.image.rotate(-90, expand=True).resize((128, 96)), dtype=np.int16)
        assert got.shape != unturned.shape


def test_exif_rotated_photo_thumbnail_is_turned_as_ingest_turned_it(http, media):
    (asset,) = media["ids"]["turned.jpg"]
    assert asset["height"] > asset["width"]
    thumb = _thumb(http, asset["id"], size=128)
    assert thumb.height == 128 and thumb.width < 128


def test_thumbnail_of_a_file_corrupted_after_ingest_is_422_with_the_reason(http, media):
    (asset,) = media["ids"]["to-corrupt.jpg"]
    path = media["src"] / "to-corrupt.jpg"
    original = path.read_bytes()
    for damaged, reason in [(original[: len(original) // 2], "corrupt or truncated image"),
                            (original[:200], "corrupt"), (b"\0" * 5000, "not a recognised image"),
                            (b"", "empty file")]:
        path.write_bytes(damaged)  # behind the warehouse's back
        r = http.get(f"/api/v1/assets/{asset['id']}/thumbnail")
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert detail.startswith(f"cannot make a thumbnail of asset {asset['id']}: ") and reason in detail, detail
    # the web page's path lookup gives the same answer (it shows its placeholder with the reason)
    r = http.get("/web/api/thumbnail", params={"path": str(path)})
    assert r.status_code == 422 and "empty file" in r.json()["detail"]
    # other assets are unaffected
    (ok,) = media["ids"]["turned.jpg"]
    assert _thumb(http, ok["id"]).size[1] == 128


def test_thumbnail_of_a_deleted_file_is_404_like_the_image(http, media):
    (asset,) = media["ids"]["to-delete.jpg"]
    (media["src"] / "to-delete.jpg").unlink()
    for route in ("thumbnail", "image"):
        r = http.get(f"/api/v1/assets/{asset['id']}/{route}")
        assert r.status_code == 404 and "is gone" in r.json()["detail"]


# -- pixql errors: the README's own example -------------------------------------------------------
def test_errors_with_dataset_prints_the_rows(media):
    result = _cli("errors", "--dataset", "media", "--root", str(media["root"]))  # a table, wrapped
    assert result.exit_code == 0 and "1 row(s)" in result.output, result.output
    result = _cli("errors", "--dataset", "media", "--root", str(media["root"]), "--format", "csv")
    assert result.exit_code == 0 and "junk.jpg" in result.output and "not a recognised" in result.output
    result = _cli("errors", "--dataset", "no-such-dataset", "--root", str(media["root"]), "--format", "csv")
    assert result.exit_code == 0 and "junk.jpg" not in result.output


# -- encoder names are checked before a job is accepted ---------------------------------------------
BAD_ENCODERS = [
    ("clip:../../x:y", "unknown CLIP model '../../x'"),
    ("bogus", "unknown encoder 'bogus'"),
    ("clip:ViT-S-32-alt", "clip:<model>:<pretrained>"),
    ("clip:ViT-S-32-alt:no-such-tag", "neither a pretrained tag of ViT-S-32-alt"),
    ("clip:ViT-B-32:/no/such/checkpoint.pt", "neither a pretrained tag of ViT-B-32"),
]


@pytest.mark.parametrize("encoder,reason", BAD_ENCODERS)
def test_ingestion_with_an_encoder_that_cannot_load_is_422(http, media, encoder, reason):
    before = http.get("/api/v1/ingestion").json()
    r = http.post("/api/v1/ingestion", json={"dataset": "x", "paths": [str(media["src"])], "encoder": encoder})
    assert r.status_code == 422, r.text
    assert reason in str(r.json()["detail"])
    # the upload form is refused the same way, before any file is written
    uploads = media["root"] / "uploads"
    existing = set(uploads.rglob("*")) if uploads.exists() else set()
    r = http.post("/api/v1/ingestion", data={"dataset": "x", "encoder": encoder},
                  files=[("files", ("a.jpg", (media["src"] / "turned.jpg").read_bytes()))])
    assert r.status_code == 422 and reason in str(r.json()["detail"])
    assert (set(uploads.rglob("*")) if uploads.exists() else set()) == existing
    assert http.get("/api/v1/ingestion").json() == before  # no job was made


def test_checkpoint_paths_obey_path_roots(tmp_path):
    """Outside `--path-root` a checkpoint is refused whether or not it exists, with one message."""
    from fastapi.testclient import TestClient

    from api.server import ServerSettings, create_app
    from encoders import check_encoder_spec

    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir(), outside.mkdir()
    (allowed / "w.pt").write_bytes(b"x")
    (outside / "w.pt").write_bytes(b"x")
    assert check_encoder_spec(f"clip:ViT-S-32-alt:{allowed / 'w.pt'}", [allowed]).endswith("w.pt")
    assert check_encoder_spec(f"clip:ViT-S-32-alt:{allowed}", [allowed])  # a directory holding one
    assert check_encoder_spec(" imagenet-lite0 ") == "imagenet-lite0"
    assert check_encoder_spec("clip:ViT-B-32:openai") == "clip:ViT-B-32:openai"
    settings = ServerSettings(root=tmp_path / "wh", auth=False, load_model=False, path_roots=[allowed])
    with TestClient(create_app(settings)) as client:
        answers = []
        for ckpt in (outside / "w.pt", outside / "missing.pt", allowed / ".." / "outside" / "w.pt"):
            r = client.post("/api/v1/ingestion", json={"paths": [str(allowed)], "encoder": f"clip:ViT-S-32-alt:{ckpt}"})
            assert r.status_code == 403, r.text
            answers.append(r.json()["detail"].replace(str(ckpt), "<ckpt>"))
        assert len(set(answers)) == 1 and "outside the directories this server reads" in answers[0]


def test_cli_refuses_a_bad_encoder_in_one_line_before_creating_anything(tmp_path, photo_dir):
    for encoder, reason in BAD_ENCODERS:
        result = _cli("ingest", str(photo_dir), "--root", str(tmp_path / "wh"), "-q", "--encoder", encoder)
        assert result.exit_code == 1
        assert reason in _one_clear_line(result)
    assert not (tmp_path / "wh").exists()


# -- server settings are checked at start ------------------------------------------------------------
@pytest.mark.parametrize("field,value,reason", [
    ("port", 99999, "between 1 and 65535"), ("port", 0, "between 1 and 65535"),
    ("query_memory_limit", "banana", "is not a size"), ("query_memory_limit", "1MB", "at least 16MB"),
    ("query_memory_limit", "80%", "is not a size"), ("query_workers", 0, "at least 1"),
    ("query_time_limit_s", -1.0, "positive"), ("max_upload_mb", float("inf"), "positive"),
    ("query_row_cap", 0, "at least 1"), ("max_queued_queries", 0, "at least 1"), ("host", "", "not a host"),
    ("path_roots", ["/no/such/dir"], "not a directory"),
])
def test_bad_settings_are_refused_when_made(field, value, reason):
    from pydantic import ValidationError

    from api.server import ServerSettings

    with pytest.raises(ValidationError, match=reason):
        ServerSettings(**{field: value})


def test_good_sizes_are_accepted_as_duckdb_reads_them():
    from api.server import ServerSettings
    from api.server.settings import parse_size

    assert parse_size("256MB") == 256 * 10**6 and parse_size("1GiB") == 2**30 and parse_size("1.5gb") == 15 * 10**8
    assert ServerSettings(query_memory_limit="1 GB").query_memory_limit == "1GB"


@pytest.mark.parametrize("args,flag,reason", [
    (["--memory-limit", "banana"], "--memory-limit", "'banana' is not a size"),
    (["--port", "99999"], "--port", "between 1 and 65535"),
    (["--query-workers", "0"], "--query-workers", "at least 1"),
    (["--time-limit", "0"], "--time-limit", "positive"),
])
def test_serve_refuses_bad_flags_in_one_line(tmp_path, args, flag, reason):
    result = _cli("serve", "--root", str(tmp_path / "wh"), *args)
    assert result.exit_code == 1
    line = _one_clear_line(result)
    assert line.startswith(f"error: {flag}: ") and reason in line


@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
def test_serve_while_another_process_holds_the_warehouse_says_so(tmp_path, read_only):
    """An ingest (a writer) or a `pixql shell` (a reader) holding the file: one line, no traceback."""
    from apiserver import free_port
    from warehouse import Warehouse

    root = tmp_path / "wh"
    Warehouse.open(root).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from warehouse import Warehouse;"
         f" wh = Warehouse.open(sys.argv[1], read_only={read_only}); print('held', flush=True); time.sleep(600)",
         str(root)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = subprocess.run([sys.executable, "-m", "api.cli", "serve", "--root", str(root), "--port", str(free_port())],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert "is held by another process" in done.stderr
        # the same words as other commands that cannot open it
        other = _cli("token", "create", "x", "--root", str(root))
        assert other.exit_code == 1 and "is held by another process" in _one_clear_line(other)
    finally:
        holder.kill()
        holder.wait()


# -- the CLI's one place for failures ------------------------------------------------------------------
def test_unexpected_errors_are_one_line_unless_debug(tmp_path, monkeypatch):
    from warehouse import Warehouse

    Warehouse.open(tmp_path / "wh").close()

    def broken(self):
        raise TypeError("a bug")

    monkeypatch.setattr(Warehouse, "datasets", broken)
    result = _cli("datasets", "--root", str(tmp_path / "wh"))
    assert result.exit_code == 70
    line = _one_clear_line(result)
    assert "internal error: TypeError: a bug" in line and "--debug" in line
    result = _cli("--debug", "datasets", "--root", str(tmp_path / "wh"))
    assert isinstance(result.exception, TypeError)  # the traceback is the user's, with --debug


def test_known_exceptions_map_to_messages():
    import errno

    from api.cli.app import describe

    assert describe(OSError(errno.EADDRINUSE, "Address already in use")) == (
        "address already in use: Address already in use", 1)
    assert describe(FileNotFoundError(errno.ENOENT, "No such file", "/x/y")) == ("no such file: /x/y", 1)
    assert describe(KeyError("unknown concept 'cat'")) == ("unknown concept 'cat'", 1)
    message, code = describe(RuntimeError("first line\n" + "x" * 1000))
    assert (message, code) == ("first line", 1)


# -- client ids: the same work for unknown ids as for known ones ---------------------------------------
def test_token_lookup_compares_one_digest_for_known_and_unknown_ids(fresh_root, monkeypatch):
    from api import auth
    from warehouse import Warehouse

    wh = Warehouse.open(fresh_root)
    try:
        client_id, secret = auth.create_token(wh.cursor(), "t", "read")
        revoked_id, revoked_secret = auth.create_token(wh.cursor(), "r", "read")
        auth.revoke_token(wh.cursor(), revoked_id)
        calls = {"compare": 0, "hash": 0}
        real_compare, real_hash = auth.hmac.compare_digest, auth._hash

        def compare(a, b):
            calls["compare"] += 1
            return real_compare(a, b)

        def digest(s):
            calls["hash"] += 1
            return real_hash(s)

        monkeypatch.setattr(auth.hmac, "compare_digest", compare)
        monkeypatch.setattr(auth, "_hash", digest)
        for cid, sec, ok in [(client_id, secret, True), (client_id, "wrong", False), ("pxq_0000000000000000", secret, False),
                             (revoked_id, revoked_secret, False), ("pxq_" + client_id[4:][::-1], secret, False)]:
            verifier = auth.Verifier(wh.cursor)  # no cache from an earlier answer
            calls.update(compare=0, hash=0)
            if ok:
                assert verifier.verify(f"Bearer {cid}:{sec}").client_id == cid
            else:
                with pytest.raises(auth.AuthError, match="invalid client id or secret"):
                    verifier.verify(f"Bearer {cid}:{sec}")
            assert calls == {"compare": 1, "hash": 1}, (cid, calls)
    finally:
        wh.close()


# -- Client.candidates sends the parameter the route reads --------------------------------------------
def test_client_candidates_honours_limit(api_server):
    from api.client import Client

    with Client(api_server.url, api_server.tokens["write"]) as c:
        assets = c.query("SELECT coactive_image_id FROM coactive_table ORDER BY path")["coactive_image_id"].to_list()
        assert len(assets) > 7
        name = f"cand_{int(time.time() * 1000) % 10**8}"
        c.create_concept(name, positive=assets[:2], negative=assets[2:4])
        try:
            assert len(c.candidates(name, limit=2)) == 2
            assert len(c.candidates(name, limit=len(assets))) == len(assets) - 4  # all unlabelled ones
            assert all(r["dataset"] == "photos" for r in c.candidates(name, limit=3, dataset="photos"))
        finally:
            c._request("DELETE", f"/api/v1/concepts/{name}")
