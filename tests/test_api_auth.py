"""Auth: bearer client_id:secret, only hashes stored, 401 vs 403 by scope, revocation, --no-auth only on loopback."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from api import auth
from api.server.settings import ServerSettings


def test_only_the_hash_is_stored(fresh_root):
    from warehouse import Warehouse

    wh = Warehouse.open(fresh_root)
    try:
        client_id, secret = auth.create_token(wh.cursor(), "ci", "write")
        row = wh.sql("SELECT * FROM catalog.api_tokens WHERE client_id = ?", [client_id]).fetchone()
        assert secret not in [str(v) for v in row]
        stored = wh.sql("SELECT secret_sha256 FROM catalog.api_tokens").fetchone()[0]
        assert stored == hashlib.sha256(secret.encode()).hexdigest()
        wh.sql("CHECKPOINT")
    finally:
        wh.close()
    assert secret.encode() not in (fresh_root / "pixql.duckdb").read_bytes()
    with pytest.raises(ValueError, match="scope"):
        auth.create_token(None, "x", "root")  # checked before anything is written


def test_parse_authorization():
    assert auth.parse_authorization("Bearer pxq_1:abc:def") == ("pxq_1", "abc:def")
    for bad in (None, "", "Basic abc", "Bearer", "Bearer :secret", "Bearer id:"):
        with pytest.raises(auth.AuthError):
            auth.parse_authorization(bad)


def test_no_auth_only_on_loopback():
    ServerSettings(auth=False, host="127.0.0.1").check()
    ServerSettings(auth=False, host="::1").check()
    with pytest.raises(ValueError, match="loopback"):
        ServerSettings(auth=False, host="0.0.0.0").check()
    ServerSettings(auth=True, host="0.0.0.0").check()
    r = subprocess.run([sys.executable, "-c", "from api.cli import main; main()", "serve", "--no-auth",
                        "--host", "0.0.0.0", "--port", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "loopback" in r.stderr


def test_http_status_codes_by_credentials_and_scope(api_server):
    with api_server.client(None) as anon:
        r = anon.get("/api/v1/datasets")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert anon.get("/health").status_code == 200  # liveness needs no token
        cid = api_server.tokens["read"].split(":")[0]
        assert anon.get("/api/v1/datasets", headers={"Authorization": f"Bearer {cid}:wrong"}).status_code == 401
        assert anon.get("/api/v1/datasets", headers={"Authorization": "Bearer garbage"}).status_code == 401
        assert anon.get("/api/v1/datasets", headers={"Authorization": f"Basic {api_server.tokens['read']}"}).status_code == 401
    with api_server.client(api_server.tokens["read"]) as read:
        assert read.get("/api/v1/datasets").status_code == 200
        r = read.post("/api/v1/ingestion", json={"dataset": "x", "paths": ["/tmp"]})
        assert r.status_code == 403 and "write" in r.json()["detail"]
        assert read.post("/api/v1/concepts", json={"name": "nope", "prompts": ["cat"]}).status_code == 403
        assert read.get("/api/v1/tokens").status_code == 403
    with api_server.client(api_server.tokens["write"]) as write:
        assert write.get("/api/v1/tokens").status_code == 403


def test_tokens_over_http_and_revocation(api_server):
    with api_server.client(api_server.tokens["admin"]) as admin:
        r = admin.post("/api/v1/tokens", json={"name": "temp", "scope": "read"})
        assert r.status_code == 201
        tok = r.json()
        assert tok["access_token"] == f"{tok['client_id']}:{tok['client_secret']}"
        listed = admin.get("/api/v1/tokens").json()
        assert tok["client_id"] in {t["client_id"] for t in listed}
        assert all("secret" not in k for t in listed for k in t)
        with api_server.client(tok["access_token"]) as new:
            assert new.get("/api/v1/datasets").status_code == 200
            assert admin.delete(f"/api/v1/tokens/{tok['client_id']}").status_code == 204
            assert new.get("/api/v1/datasets").status_code == 401
        assert admin.delete(f"/api/v1/tokens/{tok['client_id']}").status_code == 404
        assert admin.post("/api/v1/tokens", json={"name": "x", "scope": "root"}).status_code == 422


def test_token_cli(tmp_path):
    root = tmp_path / "wh"
    cli = [sys.executable, "-c", "from api.cli import main; main()"]
    r = subprocess.run(cli + ["token", "create", "alice", "--scope", "write", "--root", str(root)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(":", 1) for line in r.stdout.splitlines() if ":" in line)
    client_id, secret = fields["client_id"].strip(), fields["client_secret"].strip()
    assert client_id.startswith("pxq_") and len(secret) >= 40
    r = subprocess.run(cli + ["token", "list", "--root", str(root)], capture_output=True, text=True, timeout=120)
    assert client_id in r.stdout and "alice" in r.stdout and secret not in r.stdout
    r = subprocess.run(cli + ["token", "create", "bob", "--scope", "root", "--root", str(root)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "scope" in r.stderr
