"""`pixql demo`: a real warehouse from the photos that ship inside scikit-image and scikit-learn."""
from __future__ import annotations

from pathlib import Path

import typer

from .output import print_relation

# skimage.data functions that return a colour or grey photo without a download.
SKIMAGE_PHOTOS = [
    "astronaut", "camera", "cat", "coffee", "rocket", "horse", "moon", "page",
    "text", "clock", "coins", "immunohistochemistry", "hubble_deep_field", "retina",
    "colorwheel", "brick", "grass", "gravel", "logo", "microaneurysms",
]


def write_demo_images(target: Path) -> list[Path]:
    """Save the bundled photos as PNG files (skimage) and copy sklearn's JPEGs; return the files."""
    import shutil

    import numpy as np
    from PIL import Image
    from skimage import data

    target.mkdir(parents=True, exist_ok=True)
    out = []
    for name in SKIMAGE_PHOTOS:
        fn = getattr(data, name, None)
        if fn is None:
            continue
        try:
            arr = fn()
        except Exception:  # some builds fetch a few images on demand; skip those
            continue
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        if arr.dtype != np.uint8:
            arr = (255 * (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-9)).astype(np.uint8)
        p = target / ("chelsea.png" if name == "cat" else f"{name}.png")
        Image.fromarray(arr).save(p)
        out.append(p)
    try:
        left, right, _ = data.stereo_motorcycle()
        p = target / "motorcycle.png"
        Image.fromarray(left).save(p)
        out.append(p)
    except Exception:
        pass
    import sklearn.datasets

    sk_dir = Path(sklearn.datasets.__file__).parent / "images"
    for jpg in sorted(sk_dir.glob("*.jpg")):
        shutil.copy(jpg, target / jpg.name)
        out.append(target / jpg.name)
    return out


DEMO_QUERIES = [
    ("How many photos are there?", "SELECT dataset, count(*) AS assets FROM coactive_table GROUP BY dataset"),
    (
        "What does the default model see in each photo?",
        "SELECT regexp_extract(path, '[^/]+$') AS file, width, height, imagenet_top_class, "
        "round(imagenet_top_prob, 3) AS prob FROM coactive_table_adv ORDER BY imagenet_top_prob DESC",
    ),
    (
        "Which photos look like a cat or a coffee cup?",
        "SELECT regexp_extract(path, '[^/]+$') AS file, imagenet_top_class FROM coactive_table_adv "
        "WHERE imagenet_top_class ILIKE '%cat%' OR imagenet_top_class ILIKE '%espresso%' OR imagenet_top_class ILIKE '%cup%'",
    ),
]


def run_demo(root: Path, progress: bool = True) -> None:
    from pixql import Warehouse

    wh = Warehouse.open(root)
    images = write_demo_images(wh.root / "demo-images")
    typer.echo(f"ingesting {len(images)} bundled photos into {wh.root} ...")
    report = wh.ingest([str(wh.root / "demo-images")], dataset="demo", progress=progress)
    typer.echo(str(report))
    queries = list(DEMO_QUERIES)
    try:
        from concepts.demo import demo_queries  # concept columns, once the registry has them

        queries += demo_queries(wh)
    except ImportError:
        pass
    for title, q in queries:
        typer.secho(f"\n-- {title}", fg=typer.colors.CYAN)
        typer.echo(q)
        print_relation(wh.sql(q), "table", None)
    typer.echo(
        f"\nTry it yourself:\n  pixql sql --root {root} \"SELECT * FROM coactive_table LIMIT 5\"\n"
        f"  duckdb {wh.layout.db_path}"
    )
    wh.close()
