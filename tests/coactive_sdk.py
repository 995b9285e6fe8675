"""Drive a running `pixql serve` through the official Coactive SDK (`coactive==1.0.27`).

The SDK pins `pydantic<2.5`, which FastAPI (and so PixQL's server) cannot run
with, so it cannot share PixQL's environment: it gets a virtual environment of
its own, as it would on a client's machine. `sdk_python()` returns that
environment's interpreter: `$PIXQL_COACTIVE_PYTHON` when set, otherwise a venv
built once under `~/.cache/pixql-tests/` from `tests/sdk-requirements.txt`
(PyPI is reachable from CI and from this machine).

`SdkSession.call(code)` runs a snippet in that interpreter with
`client = Coactive(client_id=..., client_secret=..., base_url=...)` already
made; the snippet sets `result` to anything JSON-serialisable (SDK models
via `.dict(by_alias=True)` or `jsonable(...)`), or raises. SDK exceptions come
back as `SdkError` with the SDK's class name, status code and body, so tests
can assert `NotFoundError` / `UnprocessableEntityError` exactly as a user sees them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


REQUIREMENTS = Path(__file__).with_name("sdk-requirements.txt")
CACHE = Path(os.environ.get("PIXQL_TEST_CACHE", Path.home() / ".cache" / "pixql-tests"))

_PRELUDE = r'''
import json, sys, datetime, enum, uuid
import pydantic
from coactive.client import Coactive
from coactive.core.api_error import ApiError

def jsonable(x):
    if isinstance(x, pydantic.BaseModel):
        return jsonable(x.dict(by_alias=True))
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (datetime.datetime, datetime.date)):
        return x.isoformat()
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, uuid.UUID):
        return str(x)
    return x

args = json.loads(sys.stdin.read())
client = Coactive(client_id=args["client_id"], client_secret=args["client_secret"], base_url=args["base_url"])
params = args["params"]
try:
    result = None
{body}
    out = {"ok": True, "result": jsonable(result)}
except ApiError as e:
    out = {"ok": False, "error": type(e).__name__, "status_code": e.status_code, "body": jsonable(e.body)}
except Exception as e:
    out = {"ok": False, "error": type(e).__name__, "status_code": None, "body": repr(e)}
print("\n@@SDK@@" + json.dumps(out))
'''


def _clean_env() -> dict:
    """The environment minus PixQL's own Python path: the SDK must not see PixQL's packages."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


class SdkError(Exception):
    def __init__(self, name: str, status_code: int | None, body):
        super().__init__(f"{name} ({status_code}): {body}")
        self.name, self.status_code, self.body = name, status_code, body


def sdk_python() -> str:
    """The interpreter of an environment with the official SDK installed (built once)."""
    configured = os.environ.get("PIXQL_COACTIVE_PYTHON")
    if configured:
        return configured
    venv = CACHE / "coactive-1.0.27"
    python = venv / "bin" / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(CACHE / "coactive.lock")):
        ready = venv / ".ready"
        if not ready.exists():
            env = _clean_env()
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, env=env)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
                           check=True, env=env)
            ready.write_text("ok\n")
    return str(python)


class SdkSession:
    """One SDK client identity against one server: `call(code, **params)` returns `result`."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url
        self.client_id, self.client_secret = token.split(":", 1)
        self.python = sdk_python()

    def call(self, code: str, timeout: float = 180.0, **params):
        body = textwrap.indent(textwrap.dedent(code).strip("\n"), "    ")
        script = _PRELUDE.replace("{body}", body)
        payload = json.dumps({"client_id": self.client_id, "client_secret": self.client_secret,
                              "base_url": self.base_url, "params": params})
        proc = subprocess.run([self.python, "-c", script], input=payload, capture_output=True,
                              text=True, timeout=timeout, env=_clean_env())
        marker = proc.stdout.rfind("@@SDK@@")
        if marker < 0:
            raise RuntimeError(f"SDK snippet crashed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        out = json.loads(proc.stdout[marker + len("@@SDK@@"):])
        if not out["ok"]:
            raise SdkError(out["error"], out["status_code"], out["body"])
        return out["result"]
