"""Query worker processes: the child that runs one query at a time, and the parent's handle on it.

DuckDB's `memory_limit` does not bound every operator (a huge `unnest` grows
past it by gigabytes), and an interrupt does not always land; in a thread of
the server either takes the whole server down.  So each query slot is a
separate, persistent Python process (`python -m warehouse.query_worker`: a
clean interpreter, never a fork of the server with its model and warehouse
connection) that

  * opens the sandbox file the parent built (`sandbox.build`) read-only, as a
    `sandbox.SandboxDB` with the DuckDB memory and thread limits;
  * caps its own address space with `RLIMIT_AS` (its baseline after imports,
    plus the memory limit, plus `overhead`), so an allocation past it fails
    inside DuckDB as an out-of-memory error instead of growing the machine;
  * writes each result itself as Parquet (temporary name, then rename), so
    rows of a big result never cross the pipe (a small one also comes back
    in the reply, for the parent to page from memory).

The parent (`WorkerProcess`) talks to it over stdin/stdout with length-prefixed
pickles, watches its anonymous RSS (a second, independent bound), and kills
it (SIGKILL) when it is over its memory or has not unwound within a grace
period after an interrupt; a new process then takes the slot.
"""
from __future__ import annotations

import os
import pickle
import queue
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .errors import Invalid, PixqlError, TooLarge

_HEADER = struct.Struct("!I")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """Bytes in a size as DuckDB reads `memory_limit` ('256MB', '1GB' decimal; '512MiB' binary); ValueError otherwise."""
    m = _SIZE.match(str(text))
    if not m:
        raise Invalid(f"{text!r} is not a size: use a number and a unit, e.g. 256MB, 1GB or 2GiB")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise Invalid(f"{text!r} is not a size: it must be more than 0 bytes")
    return n


def unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        base, k = n, seen.get(n, 0)
        name = base if k == 0 else f"{base}_{k}"
        while name in seen:
            k += 1
            name = f"{base}_{k}"
        seen[base] = k + 1
        seen.setdefault(name, 1)
        out.append(name)
    return out


def overhead(memory_limit: int) -> int:
    """What a worker may use beyond DuckDB's own limit (Arrow batches, Parquet writer, Python)."""
    return max(128 * 2**20, memory_limit // 4)


# -- framing (both sides) ------------------------------------------------------------------------

def send(fd: int, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytes:
    parts, left = [], n
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError("the other side closed the pipe")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def recv(fd: int):
    (n,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    return pickle.loads(_read_exact(fd, n))


def _status(pid: int | str = "self") -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmSize", "RssAnon", "VmRSS"):
                out[key] = int(value.split()[0]) * 1024
    return out


# -- the child -----------------------------------------------------------------------------------

class _Child:
    def __init__(self, fd_in: int, fd_out: int):
        self.fd_in, self.fd_out = fd_in, fd_out
        self._send_lock = threading.Lock()
        self.db = None
        self.fp: str | None = None

    def reply(self, obj) -> None:
        with self._send_lock:
            send(self.fd_out, obj)

    def setup(self, init: dict) -> None:
        import duckdb  # (imported before the baseline is measured)
        import pyarrow.parquet  # noqa: F401

        # DuckDB imports numpy, pandas & co. (~360 modules, a quarter of a second) the first
        # time a query binds a Python parameter, as layer 2's check does: here, into the
        # baseline, rather than on the first user query of every new worker (and its memory cap).
        warm = duckdb.connect()
        warm.execute("SELECT ?::VARCHAR", ["warm"]).fetchone()
        warm.close()

        from . import sandbox

        self.sandbox = sandbox
        self.root = init["root"]
        self.limits = sandbox.SandboxLimits(init["memory_limit"], init["threads"])
        self.limit = parse_size(init["memory_limit"])
        base = _status()
        # Thread stacks and malloc arenas reserve address space without using
        # it; 128 MB covers them at the thread counts a worker runs.
        self.as_cap = base["VmSize"] + self.limit + overhead(self.limit) + 128 * 2**20
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (self.as_cap, self.as_cap))
        self.reply({"ready": True, "pid": os.getpid(), "baseline": base, "as_cap": self.as_cap})

    def open_db(self, fp: str, path: str, defs: dict) -> None:
        if self.fp == fp and self.db is not None:
            return
        if self.db is not None:
            self.db.close()
            self.db, self.fp = None, None
        self.db = self.sandbox.SandboxDB(self.root, defs, self.limits, path=Path(path))
        self.fp = fp

    def run(self, msg: dict) -> None:
        import duckdb

        out: dict = {"done": msg["qid"]}
        tmp, final = Path(msg["tmp"]), Path(msg["final"])
        try:
            self.open_db(*msg["sandbox"])
            out.update(self._execute(msg, tmp))
            tmp.replace(final)
            out["ok"] = True
        except BaseException as e:  # the reply must go out whatever happened
            tmp.unlink(missing_ok=True)
            text = str(e)
            if isinstance(e, (duckdb.OutOfMemoryException, MemoryError)) or "bad_alloc" in text \
                    or "bad allocation" in text:
                kind = "memory"
            elif isinstance(e, duckdb.InterruptException):
                kind = "interrupted"
            elif isinstance(e, RowCapExceeded) or isinstance(e, self.sandbox.SandboxError) \
                    or isinstance(e, duckdb.Error):
                kind = "query"
            else:
                kind, text = "internal", f"{type(e).__name__}: {e}"
            out.update(ok=False, kind=kind, error=text.split("\n\nPossible solutions")[0])
        finally:
            if self.db is not None:
                self.db.done()
        self.reply(out)

    def _execute(self, msg: dict, tmp: Path) -> dict:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cap, rows = msg["row_cap"], msg["batch_rows"]
        inline_rows, inline_bytes = msg.get("inline_rows", 0), msg.get("inline_bytes", 0)
        reader = self.db.execute(msg["sql"], batch_rows=rows, dataset=msg["dataset"])
        names = unique_names(reader.schema.names)
        schema = pa.schema([f.with_name(n) for f, n in zip(reader.schema, names)])
        total, kept, size = 0, [], 0
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in reader:
                total += batch.num_rows
                if total > cap:
                    raise RowCapExceeded(
                        f"the result has more than {cap} rows (the row cap); add LIMIT or aggregate")
                table = pa.Table.from_batches([batch]).rename_columns(names)
                writer.write_table(table, row_group_size=rows)
                if kept is not None:
                    size += table.nbytes
                    kept = kept + [table] if total <= inline_rows and size <= inline_bytes else None
        out = {"total": total, "columns": [{"name": f.name, "type": str(f.type)} for f in schema]}
        if kept is not None:
            # Small: the parent serves its pages from memory (the file stays the record of it).
            out["table"] = pa.concat_tables(kept) if kept else schema.empty_table()
        return out

    def loop(self) -> None:
        # The main thread only reads the pipe, so an interrupt is handled
        # while the query runs on the query thread (DuckDB releases the GIL).
        # One query thread for the worker's life, fed by a queue: a thread started per
        # query cost more than a small query's own CPU, and the pipe waited for it to start.
        # (Started at the first query, as the per-query threads were: after `setup` measured the
        # baseline, so its stack counts against the memory cap as theirs did.)
        runs: "queue.SimpleQueue[dict]" = queue.SimpleQueue()
        started = False

        def query_thread() -> None:
            while True:
                try:
                    self.run(runs.get())
                except BaseException:  # its reply could not go out: the parent sees the worker end
                    os._exit(1)

        while True:
            try:
                msg = recv(self.fd_in)
            except (EOFError, OSError):
                os._exit(0)  # the server went away: nothing left to answer
            op = msg.get("op")
            if op == "init":
                self.setup(msg)
            elif op == "run":
                runs.put(msg)
                if not started:
                    threading.Thread(target=query_thread, name="pixql-query", daemon=True).start()
                    started = True
            elif op == "interrupt" and self.db is not None:
                self.db.interrupt()


class RowCapExceeded(TooLarge):
    pass


def main() -> None:
    # The protocol owns the original stdin/stdout; anything printed goes to stderr.
    fd_in, fd_out = os.dup(0), os.dup(1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    try:  # die with the server even if the pipe is somehow kept open
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    _Child(fd_in, fd_out).loop()


def sweep_stale_dirs() -> None:
    """Remove the temp directories of servers that died without cleaning up (e.g. SIGKILL)."""
    for d in Path(tempfile.gettempdir()).glob("pixql-[ws]*-*-*"):
        m = re.fullmatch(r"pixql-(?:worker|sandboxes)-(\d+)-.*", d.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            shutil.rmtree(d, ignore_errors=True)


# -- the parent's handle -------------------------------------------------------------------------

class WorkerDied(PixqlError, RuntimeError):
    pass


class WorkerProcess:
    """One worker process, driven by one thread of the parent (not thread-safe beyond `interrupt`)."""

    def __init__(self, root: Path, memory_limit: str, threads: int, ready_timeout: float = 120.0):
        self.limit = parse_size(memory_limit)
        env = dict(os.environ)
        # A clean interpreter that imports this worktree's `warehouse`, whatever the cwd.
        pkg_parent = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env["MALLOC_ARENA_MAX"] = "2"  # fewer 64 MB arena reservations inside the RLIMIT_AS cap
        # Its own temp directory (DuckDB spills there), removed even if the worker is killed.
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"pixql-worker-{os.getpid()}-"))
        env["TMPDIR"] = str(self.tmpdir)
        self.proc = subprocess.Popen([sys.executable, "-m", "warehouse.query_worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, bufsize=0, env=env, close_fds=True)
        self.pid = self.proc.pid
        self._in, self._out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self._send_lock = threading.Lock()
        self.fp: str | None = None  # the sandbox this worker has open
        self.killed = False
        self._send({"op": "init", "root": str(root), "memory_limit": memory_limit, "threads": threads})
        ready = self.reply(ready_timeout)
        if not ready or not ready.get("ready"):
            self.kill()
            raise WorkerDied("the query worker did not start")
        base = ready["baseline"]
        # The parent's bound, independent of RLIMIT_AS: anonymous memory only
        # (shared library pages are shared with every other process).
        self.rss_cap = base["RssAnon"] + self.limit + overhead(self.limit)

    def _send(self, obj) -> None:
        with self._send_lock:
            send(self._in, obj)

    def run(self, qid: str, sql: str, dataset: str | None, tmp: Path, final: Path, sandbox: tuple,
            row_cap: int, batch_rows: int, inline_rows: int = 0, inline_bytes: int = 0) -> None:
        fp, path, defs = sandbox
        self._send({"op": "run", "qid": qid, "sql": sql, "dataset": dataset, "tmp": str(tmp), "final": str(final),
                    "row_cap": row_cap, "batch_rows": batch_rows, "inline_rows": inline_rows,
                    "inline_bytes": inline_bytes, "sandbox": (fp, str(path), defs)})
        self.fp = fp

    def interrupt(self) -> None:
        try:
            self._send({"op": "interrupt"})
        except OSError:
            pass

    def reply(self, timeout: float):
        """The next message, or None if none came within `timeout`; raises WorkerDied if the process is gone."""
        try:
            ready, _, _ = select.select([self._out], [], [], timeout)
        except ValueError:
            raise WorkerDied("the worker's pipe is closed")
        if not ready:
            if self.proc.poll() is not None:
                raise WorkerDied(self.exit_reason())
            return None
        try:
            return recv(self._out)
        except (EOFError, OSError, pickle.UnpicklingError):
            self.proc.wait(5)
            raise WorkerDied(self.exit_reason())

    def exit_reason(self) -> str:
        rc = self.proc.poll()
        if rc is None:
            return "still running"
        if rc < 0:
            return f"killed by {signal.Signals(-rc).name}"
        return f"exited with status {rc}"

    def anon_rss(self) -> int:
        try:
            with open(f"/proc/{self.pid}/statm") as f:
                _, resident, shared, *_ = (int(x) for x in f.read().split())
            return (resident - shared) * _PAGE
        except (OSError, ValueError):
            return 0

    def alive(self) -> bool:
        return not self.killed and self.proc.poll() is None

    def kill(self) -> None:
        self.killed = True
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def close(self, timeout: float = 5.0) -> None:
        """Let the worker exit on its own (EOF on its stdin), then kill it if it lingers."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


if __name__ == "__main__":
    main()
