"""Run a test module inside a fresh network namespace that has only `lo`, so every packet stays on loopback.

Started plainly, Ray takes the machine's outward interface as its node address
and probes a public DNS server to find it.  In a namespace made by
`unshare --net` (we run as root) the only interface is `lo`: Ray uses
127.0.0.1 for every node and nothing can leave the machine.

    @netns.loopback
    def test_something(cluster): ...

A module whose tests are decorated runs twice: the outer pytest process
re-executes the whole module once, inside the namespace, with
`PIXQL_IN_NETNS=1` (so module-scoped fixtures, such as one Ray cluster, are
shared), and each outer test reports the outcome of the same test inside:
passed, failed with the inner report, or skipped with its reason.
"""
from __future__ import annotations

import functools
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ENV = "PIXQL_IN_NETNS"
TIMEOUT_S = 900


def inside() -> bool:
    return os.environ.get(ENV) == "1"


def interfaces() -> list[str]:
    """This process's network interfaces (/proc/net/dev is per namespace; /sys/class/net is not remounted)."""
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)


def command(argv: list[str]) -> list[str]:
    """`argv` run in a new network namespace whose only interface, lo, is up."""
    return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *argv]


@functools.cache
def _results(module_file: str) -> dict[str, tuple[str, str]]:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return {"*": ("skipped", "needs unshare and ip (util-linux, iproute2)")}
    out = Path(tempfile.mkdtemp(prefix="pixql-netns-"))
    xml = out / "junit.xml"
    env = {**os.environ, ENV: "1"}
    argv = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", module_file,
            f"--junitxml={xml}", "-o", "junit_family=xunit1"]
    proc = subprocess.run(command(argv), env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    log = (proc.stdout + proc.stderr)[-6000:]
    if not xml.exists():
        return {"*": ("failed", f"the namespaced run did not report (exit {proc.returncode}):\n{log}")}
    results = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome, text = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, text = "failed", (child.get("message") or "") + "\n" + (child.text or "")
            elif child.tag == "skipped":
                outcome, text = "skipped", child.get("message") or ""
        results[case.get("name")] = (outcome, text)
    if proc.returncode not in (0, 5):
        results.setdefault("*", ("failed", log))
    return results


def loopback(test):
    """Run `test` inside the namespace; outside it, report the namespaced outcome of the same test."""
    if inside():
        return test

    @functools.wraps(test)
    def outer(*args, **kwargs):
        results = _results(str(Path(sys.modules[test.__module__].__file__)))
        outcome, text = results.get(test.__name__) or results.get("*") or (
            "failed", "not run inside the namespace (an earlier test failed, -x)")
        if outcome == "skipped":
            pytest.skip(text)
        if outcome == "failed":
            pytest.fail(text, pytrace=False)

    # The outer test takes no fixtures (pytest reads the signature, following __wrapped__): the inner
    # run builds them.
    del outer.__wrapped__
    outer.__signature__ = inspect.Signature()
    return outer
