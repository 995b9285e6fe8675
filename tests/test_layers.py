"""The layers import one way: warehouse and encoders at the bottom, ingest, then concepts, then the
`pixql` facade, then api.  Checked on the source with `ast` (every import, also those inside
functions) and in a fresh interpreter (what importing the storage layer actually loads)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "concepts", "encoders", "ingest", "pixql", "warehouse")

# What each package must not import (by top-level package).  encoders and warehouse import none
# of the others; the one documented exception is warehouse/__init__.py's lazy `Warehouse`.
FORBIDDEN = {
    "warehouse": {"api", "concepts", "encoders", "ingest", "pixql"},
    "encoders": {"api", "concepts", "ingest", "pixql", "warehouse"},
    "ingest": {"api", "concepts", "pixql"},
    "concepts": {"api", "pixql"},
    "pixql": {"api"},
}
LAZY_REEXPORT = ("warehouse/__init__.py", "__getattr__", "pixql", ("Warehouse",))


def _modules(package: str):
    for f in sorted((ROOT / package).rglob("*.py")):
        yield f, f.relative_to(ROOT).as_posix()


def _imports(path: Path, rel: str):
    """(absolute module, names, enclosing function) for every import in the file."""
    parts = rel[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    package = parts if rel.endswith("__init__.py") else parts[:-1]
    out = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            f = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Import):
                out.extend((a.name, (), f) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package[: len(package) - child.level + 1] if child.level else []
                module = ".".join(base + ([child.module] if child.module else []))
                out.append((module, tuple(a.name for a in child.names), f))
            visit(child, f)

    visit(ast.parse(path.read_text()), None)
    return out


def test_the_import_scanner_resolves_relative_imports():
    found = _imports(ROOT / "ingest" / "analyzers" / "run.py", "ingest/analyzers/run.py")
    assert ("ingest.decode", ("DecodedAsset", "decode_source"), None) in found
    assert any(m == "ingest.analyzers" for m, _, _ in found)


def test_layers_import_one_way():
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for f, rel in _modules(package):
            for module, names, func in _imports(f, rel):
                top = module.split(".")[0]
                if top not in forbidden:
                    continue
                if (rel, func, module, names) == LAZY_REEXPORT:
                    continue
                bad.append(f"{rel} ({func or 'module level'}) imports {module}")
    assert bad == []


def test_concepts_use_only_decoding_from_ingest():
    """classify and moderation read and decode files as ingest does (local paths and object URIs),
    nothing more: not ingest's pipeline."""
    for f, rel in _modules("concepts"):
        used = {m for m, _, _ in _imports(f, rel) if m.split(".")[0] == "ingest"}
        assert used <= {"ingest.decode", "ingest.sources", "ingest.objects"}, f"{rel} imports {used}"


def test_encoder_sql_does_not_import_encoders():
    assert not any(m.split(".")[0] == "encoders"
                   for m, _, _ in _imports(ROOT / "warehouse" / "encoder_sql.py", "warehouse/encoder_sql.py"))


def test_internal_code_names_the_class_it_means():
    """Inside PixQL nobody takes the facade through the storage layer's lazy re-export: layers
    below the facade use `warehouse.core.WarehouseCore` (or a passed-in object), api `pixql.Warehouse`."""
    hits = []
    for package in PACKAGES:
        for f, rel in _modules(package):
            for module, names, func in _imports(f, rel):
                if module == "warehouse" and "Warehouse" in names:
                    hits.append(rel)
    assert hits == []


def test_importing_the_storage_layer_loads_nothing_above_it():
    """Every warehouse module imported in a fresh interpreter; only then is `Warehouse` asked for."""
    mods = [rel[:-3].replace("/", ".") for _, rel in _modules("warehouse") if not rel.endswith("__init__.py")]
    code = (
        "import sys, importlib\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        f"above = sorted({{n.split('.')[0] for n in sys.modules}} & {set(PACKAGES) - {'warehouse'}!r})\n"
        "print(above)\n"
        "from warehouse import Warehouse, WarehouseCore\n"
        "import pixql\n"
        "print(Warehouse is pixql.Warehouse, issubclass(Warehouse, WarehouseCore), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    # The facade arrives on first access, and without the seconds of torch ingest would cost.
    assert out.stdout.split("\n")[:2] == ["[]", "True True False"]
