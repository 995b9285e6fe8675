"""One error hierarchy (warehouse/errors.py) mapped to HTTP and CLI in one table; one settings object.

Every subclass of `PixqlError` has the status it is meant to have (a new class
fails here until it is given one); a bug inside a route is a 500 with a generic
message, not a 400; `PIXQL_*` variables override the defaults and `pixql serve`
flags override the variables; the README's settings table lists every field.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from warehouse import errors
from warehouse.errors import KINDS, PixqlError, kind_of

REPO = Path(__file__).resolve().parent.parent

# class name -> the HTTP status it must answer with.  Adding an error class means adding it here.
EXPECTED = {
    "Invalid": 400, "Unauthorized": 401, "Forbidden": 403, "NotFound": 404, "MissingFile": 404,
    "Conflict": 409, "Gone": 410, "Blocked": 403, "TooLarge": 413, "Unprocessable": 422, "TooMany": 429, "Unavailable": 503,
    "NotReady": 503, "Retry": 503, "Interrupted": 503,
    "SandboxError": 400, "PolicyError": 400, "ConceptError": 400, "NotEnoughLabels": 400,
    "AnalyzerUnavailable": 400, "DecodeError": 422, "RowCapExceeded": 413,
    "QueryNotFound": 404, "ConceptNotFound": 404, "PolicyNotFound": 404, "ModerationNotFound": 404,
    "QueryConflict": 409, "AlreadyDelivering": 409, "QueueFull": 429,
    "AuthError": 401, "ScopeError": 403, "Refused": 403, "FetchError": 400,
    # failures of the server or of a remote call, not of the request
    "WorkerDied": 500, "ApiError": 500, "QueryError": 500,
}


def _import_everything() -> None:
    """Import every module of the packages, so every subclass of PixqlError is defined."""
    for pkg in ("warehouse", "encoders", "ingest", "concepts", "api"):
        mod = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(mod.__path__, prefix=f"{pkg}."):
            if info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except ImportError:  # an optional extra (e.g. an analyzer's package) not installed
                pass


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _subclasses(sub)
    return out


def test_every_error_class_has_its_status_in_the_one_table():
    _import_everything()
    found = {c for c in _subclasses(PixqlError) if c.__module__.split(".")[0] != "tests"}
    assert {c.__name__ for c in found} == set(EXPECTED), "give every error class its status in EXPECTED"
    for cls in found:
        assert kind_of(cls).status == EXPECTED[cls.__name__], cls
    assert kind_of(PixqlError).status == 500 and kind_of(ValueError) is None
    # the builtin bases stay, so `except ValueError` / `except KeyError` callers still work
    from concepts import ConceptNotFound
    from warehouse.queries import QueryNotFound
    from warehouse.sandbox import SandboxError

    assert issubclass(SandboxError, ValueError) and issubclass(QueryNotFound, KeyError)
    assert issubclass(ConceptNotFound, ValueError) and issubclass(ConceptNotFound, LookupError)
    assert str(QueryNotFound("q1")) == "unknown query id 'q1'"
    assert str(errors.NotFound("no such thing")) == "no such thing"  # not KeyError's quoted repr
    assert str(errors.Forbidden("not you")) == "not you"


def test_cli_exit_codes_come_from_the_same_table():
    from api.cli.app import describe
    from warehouse.query_worker import WorkerDied

    for cls in (errors.NotFound, errors.Invalid, errors.Forbidden, errors.TooMany, errors.Unprocessable):
        assert describe(cls("what went wrong")) == ("what went wrong", KINDS[cls].exit_code)
    assert describe(WorkerDied("worker process died"))[1] == KINDS[PixqlError].exit_code
    message, code = describe(ZeroDivisionError("division by zero"))
    assert code == errors.EXIT_INTERNAL and message.startswith("internal error: ZeroDivisionError")


@pytest.fixture()
def app(tmp_path):
    from api.server import ServerSettings, create_app
    from warehouse.query_worker import WorkerDied

    app = create_app(ServerSettings(root=tmp_path / "wh", auth=False, load_model=False))

    @app.get("/test/bug")
    def bug():
        int("not a number")  # an internal ValueError, not the client's fault

    @app.get("/test/missing-file")
    def missing_file():
        open(tmp_path / "nowhere.txt").read()

    @app.get("/test/invalid")
    def invalid():
        raise errors.Invalid("limit must be positive")

    @app.get("/test/worker")
    def worker():
        raise WorkerDied("the worker's pipe is closed")

    return app


def test_an_internal_value_error_is_a_500_not_a_400(app, caplog):
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/test/bug", "/test/missing-file"):
            r = client.get(path)
            assert r.status_code == 500, (path, r.text)
            assert "invalid literal" not in r.text and "nowhere" not in r.text  # internals stay in the log
            assert "internal server error" in r.json()["detail"]
        r = client.get("/test/invalid")
        assert r.status_code == 400 and r.json()["detail"] == "limit must be positive"
        with caplog.at_level(logging.ERROR, logger="pixql.server"):
            r = client.get("/test/worker")
        assert r.status_code == 500 and "pipe" not in r.text
        assert any("pipe is closed" in rec.getMessage() and rec.exc_info for rec in caplog.records)
        # a real route: an unknown id is still the 404 the router no longer converts by hand
        r = client.get("/api/v1/moderate/tasks/nosuchtask")
        assert r.status_code == 404 and "nosuchtask" in r.json()["detail"]
        r = client.get("/api/v1/ingestion/nosuchjob")
        assert r.status_code == 404 and r.json()["detail"] == "unknown ingestion job 'nosuchjob'"


def test_env_overrides_defaults_and_serve_flags_override_env(tmp_path, monkeypatch):
    from api.server.settings import ServerSettings

    for name in ("PIXQL_HOME", "PIXQL_PORT", "PIXQL_QUERY_WORKERS", "PIXQL_WEBHOOK_MAX_ATTEMPTS", "PIXQL_AUTH"):
        monkeypatch.delenv(name, raising=False)
    base = ServerSettings()
    assert (base.port, base.query_workers, base.root) == (8000, 2, Path("pixql-data"))

    monkeypatch.setenv("PIXQL_HOME", str(tmp_path / "from-env"))
    monkeypatch.setenv("PIXQL_PORT", "9100")
    monkeypatch.setenv("PIXQL_QUERY_WORKERS", "3")
    monkeypatch.setenv("PIXQL_WEBHOOK_MAX_ATTEMPTS", "2")
    s = ServerSettings()
    assert (s.root, s.port, s.query_workers, s.webhook_max_attempts) == (tmp_path / "from-env", 9100, 3, 2)
    assert s.query_time_limit_s == base.query_time_limit_s  # untouched fields keep their default

    from warehouse.storage import default_root

    assert default_root() == tmp_path / "from-env"  # the CLI and the SDK read the same variable

    monkeypatch.setenv("PIXQL_PORT", "99999")
    with pytest.raises(ValueError, match="between 1 and 65535"):
        ServerSettings()  # a bad variable is refused like a bad flag
    monkeypatch.setenv("PIXQL_PORT", "9100")

    # `pixql serve`: what is on the command line wins; what is not comes from the environment.
    import api.server
    import uvicorn
    from api.cli import app as cli

    seen = {}
    monkeypatch.setattr(api.server, "create_app", lambda settings: seen.setdefault("settings", settings))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.setdefault("run", kw))
    r = CliRunner().invoke(cli, ["serve", "--port", "9200", "--root", str(tmp_path / "from-flag")])
    assert r.exit_code == 0, r.output
    got = seen["settings"]
    assert (got.port, got.root, got.query_workers, got.auth) == (9200, tmp_path / "from-flag", 3, True)
    assert seen["run"]["port"] == 9200 and seen["run"]["host"] == "127.0.0.1"

    seen.clear()
    r = CliRunner().invoke(cli, ["serve", "--query-workers", "0"])
    assert r.exit_code == 1 and "--query-workers: must be at least 1" in r.output and not seen


def _readme_settings_table() -> dict[str, list[str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("### Settings", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_readme_settings_table_lists_every_field_with_its_variable_and_default():
    from api.server.settings import ServerSettings

    rows = _readme_settings_table()
    assert set(rows) == set(ServerSettings.model_fields), "the README's settings table and ServerSettings differ"
    for name, field in ServerSettings.model_fields.items():
        _, flag, env, default, meaning = rows[name]
        assert env == f"`{field.validation_alias or 'PIXQL_' + name.upper()}`", name
        assert meaning, name
        if field.default_factory is None:
            shown = "unset" if field.default is None and name == "webhook_secret" else f"`{field.default}`"
            assert default == shown, (name, default, field.default)
        for f in re.findall(r"`(--[a-z-]+)`", flag):
            assert f in (REPO / "api" / "cli" / "serve.py").read_text() + (REPO / "api" / "cli" / "app.py").read_text()
