"""Dashboard, SQL console charts, concept threshold tuning and the video timeline, in Chromium.

The warehouse is seeded in-process over five days with the clock set back
(`warehouse.catalog.now`, which ingest and moderation both stamp rows with):
photos ingested on three days, moderated the day they arrived, a person's
overrides the day before today.  The numbers each chart must show are worked
out here from what the seeding returned, not read back from the endpoints.
Charts are read through ECharts' own data (`getOption()`), and clicks land on
the pixel ECharts reports for a point (`convertToPixel`).  Screenshots go to
$PIXQL_ARTIFACTS/web (default ./artifacts/web).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from test_web_page import PIXQL, REPO, Server, _cli, _free_port, artifacts_dir, browser, login, page  # noqa: F401
from videogen import make_video

# The default 0.5 thresholds; review from 0.005: a few photos flagged, most not.  open_nsfw and
# NudeNet give every photo a small nudity score, so those categories are left out here.
BAND = {"review_band": 0.495, "thresholds": {"explicit_nudity": "ignore", "suggestive": "ignore",
                                             "female_underwear": "ignore",
                                             "revealing_clothes": 0.5, "swimwear": 0.5}}
PAST = {"batch_a": 4, "batch_b": 3, "batch_c": 2, "people": 1}  # days before today


def _top(reason: dict) -> str:
    return reason.get("parent") or reason["category"]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, photo_dir):
    from concepts.moderation import Item, Moderator
    from warehouse import Warehouse, catalog

    base = tmp_path_factory.mktemp("dash")
    photos = shutil.copytree(photo_dir, base / "photos")
    clips = base / "clips"
    clips.mkdir()
    make_video(clips / "clip.mp4", seconds=4, rate=10, width=160, height=120, shape_at={2})
    root = base / "pixql-data"
    files = sorted(str(p) for p in photos.iterdir())
    batches = {"batch_a": files[:8], "batch_b": files[8:16], "batch_c": files[16:]}

    real_now = catalog.now
    noon = real_now().replace(hour=12, minute=0, second=0, microsecond=0)
    day = {k: noon - timedelta(days=d) for k, d in PAST.items()}
    model, human = [], []  # (day, result) of every model verdict; (day, subject, model status, new status)
    try:
        with Warehouse.open(root) as wh:
            m = Moderator(wh)
            for batch, paths in batches.items():
                catalog.now = lambda t=day[batch]: t
                wh.ingest(paths, dataset="photos", progress=False)
                if batch == "batch_c":
                    wh.ingest([str(clips)], dataset="clips", progress=False)
                con = wh.cursor()
                ids = [r[0] for r in con.execute(
                    "SELECT coactive_image_id FROM coactive_table WHERE list_contains(?, path)", [paths]).fetchall()]
                items = [Item(coactive_image_id=i) for i in ids]
                if batch == "batch_c":
                    vid = con.execute("SELECT coactive_video_id FROM catalog.videos").fetchone()[0]
                    items.append(Item(coactive_video_id=vid))
                out = m.moderate(items, policy=BAND)
                model += [(day[batch].date(), r) for r in out["results"]]
            catalog.now = lambda: day["people"]
            flagged = [r for _, r in model if r["status"] == "review" and r["subject_kind"] == "asset"]
            rejected = [r for _, r in model if r["status"] == "rejected"]
            approved = [r for _, r in model if r["status"] == "approved"]
            assert len(flagged) >= 3 and rejected and len(approved) >= 2, [r["status"] for _, r in model]
            # Two flagged photos approved (overturned), the rejected one confirmed, one approved one rejected.
            for r, new in [(flagged[0], "approved"), (flagged[1], "approved"), (rejected[0], "rejected"),
                           (approved[0], "rejected")]:
                m.override(r["subject_id"], new, comment="seeded", user="lead")
                human.append((day["people"].date(), r["subject_id"], r["status"], new))
    finally:
        catalog.now = real_now
    return {"root": root, "model": model, "human": human, "day": {k: v.date() for k, v in day.items()},
            "video_id": vid, "base": base}


@pytest.fixture(scope="module")
def server(seeded):
    root, base = seeded["root"], seeded["base"]
    out = _cli("token", "create", "dash-test", "--scope", "write", root=root)
    client_id = re.search(r"client_id:\s+(\S+)", out).group(1)
    secret = re.search(r"client_secret:\s+(\S+)", out).group(1)
    out = _cli("token", "create", "dash-reader", "--scope", "read", root=root)
    reader = (re.search(r"client_id:\s+(\S+)", out).group(1), re.search(r"client_secret:\s+(\S+)", out).group(1))
    port = _free_port()
    log = base / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen([*PIXQL, "serve", "--port", str(port), "--root", str(root), "--log-level", "warning"],
                                stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    srv = Server(root, port, client_id, secret, log)
    srv.reader = reader
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, f"pixql serve exited: {log.read_text()}"
        try:
            if httpx.get(srv.url + "/ready", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"pixql serve is not ready: {log.read_text()}"
        time.sleep(0.3)
    yield srv
    srv.http.close()
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- what the charts must show, from the seeding ------------------------------------------------------
def expected_flagged(seeded) -> Counter:
    """(day, top-level category) -> subjects the model flagged that day naming it."""
    c = Counter()
    for d, r in seeded["model"]:
        if r["status"] in ("rejected", "review"):
            for top in {_top(x) for x in r["reasons"] if x.get("category")}:
                c[(str(d), top)] += 1
    return c


def expected_overturns(seeded) -> dict:
    changed = {s: model != new for _, s, model, new in seeded["human"]}
    out: dict[str, dict] = {}
    for _, r in seeded["model"]:
        tops = {_top(x) for x in r["reasons"] if x.get("category")} or {"(none)"}
        for t in tops:
            e = out.setdefault(t, {"model_decisions": 0, "overturned": 0, "reviewed": 0})
            e["model_decisions"] += 1
            e["reviewed"] += r["subject_id"] in changed
            e["overturned"] += changed.get(r["subject_id"], False)
    return out


def expected_decisions(seeded) -> Counter:
    c = Counter((str(d), r["status"]) for d, r in seeded["model"])
    for d, _, _, new in seeded["human"]:
        c[(str(d), new)] += 1
    return c


def series_of(page, selector: str) -> list[dict]:
    return page.evaluate(f"""() => {{
        const o = echarts.getInstanceByDom(document.querySelector('{selector}')).getOption();
        return o.series.map(s => ({{name: s.name, type: s.type, data: s.data}}));
    }}""")


def axis_of(page, selector: str, axis: str = "xAxis") -> list:
    return page.evaluate(f"echarts.getInstanceByDom(document.querySelector('{selector}')).getOption().{axis}[0].data")


def click_point(page, selector: str, x, y):
    """A real mouse click where ECharts draws the grid coordinate (x, y) of the chart in `selector`."""
    # Bars grow in when a chart is (re)drawn, e.g. after going back: click once they are drawn whole.
    page.wait_for_function(f"""() => {{ const c = echarts.getInstanceByDom(document.querySelector('{selector}'));
        return c && c.getZr().animation.isFinished(); }}""")
    px, py = page.evaluate(f"""([x, y]) => echarts.getInstanceByDom(document.querySelector('{selector}'))
        .convertToPixel({{gridIndex: 0}}, [x, y])""", [x, y])
    # A person scrolls to a chart before clicking it; a mouse click outside the viewport hits nothing.
    page.locator(selector).scroll_into_view_if_needed()
    box = page.locator(selector).bounding_box()
    page.mouse.click(box["x"] + px, box["y"] + py)


# -- the endpoints ------------------------------------------------------------------------------------
def test_insights_endpoints_count_what_was_seeded(server, seeded):
    since = str(seeded["day"]["batch_a"] - timedelta(days=1))
    until = str(seeded["day"]["people"] + timedelta(days=1))
    period = {"since": since, "until": until}
    ing = server.get("/api/v1/insights/ingested", params=period)
    assert ing["days"][0] == since and ing["days"][-1] == until and len(ing["days"]) == 6
    images = dict(zip(ing["days"], next(s for s in ing["series"] if s["name"] == "image")["data"]))
    assert images[str(seeded["day"]["batch_a"])] == 8 and images[str(seeded["day"]["batch_b"])] == 8
    assert images[str(seeded["day"]["batch_c"])] == len(list((seeded["base"] / "photos").iterdir())) - 16
    assert images[since] == 0 and images[until] == 0
    frames = dict(zip(ing["days"], next(s for s in ing["series"] if s["name"] == "keyframe")["data"]))
    assert frames[str(seeded["day"]["batch_c"])] == 4

    fl = server.get("/api/v1/insights/flagged", params=period)
    got = Counter({(d, s["name"]): n for s in fl["series"] for d, n in zip(fl["days"], s["data"]) if n})
    assert got == expected_flagged(seeded) and got

    dec = server.get("/api/v1/insights/decisions", params=period)
    got = Counter({(d, s["name"]): n for s in dec["series"] for d, n in zip(dec["days"], s["data"]) if n})
    assert got == expected_decisions(seeded)

    ov = {c["category"]: c for c in server.get("/api/v1/insights/overturns", params=period)["categories"]}
    exp = expected_overturns(seeded)
    assert {k: {f: v[f] for f in ("model_decisions", "overturned", "reviewed")} for k, v in ov.items()} == exp
    for k, v in ov.items():
        assert v["rate"] == pytest.approx(exp[k]["overturned"] / exp[k]["model_decisions"])
    assert ov["(none)"]["overturned"] == 1  # the approved photo a person rejected

    q = {s["status"]: s["count"] for s in server.get("/api/v1/insights/queue")["statuses"]}
    now = Counter(r["status"] for _, r in seeded["model"])
    for _, _, old, new in seeded["human"]:
        now[old] -= 1
        now[new] += 1
    assert q == {k: now.get(k, 0) for k in ("review", "rejected", "approved")}

    # A person's decision keeps the model verdict it replaced, beside their own.
    for _, subject, old, new in seeded["human"]:
        latest = server.get(f"/api/v1/assets/{subject}/moderation")["history"][0]
        assert (latest["decided_by"], latest["status"], latest["model_status"]) == ("user", new, old)

    # The same read scope as the rest of the API; a bad period is a 400 with the reason.
    reader = httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": "Bearer " + ":".join(server.reader)})
    assert reader.get("/api/v1/insights/dashboard").status_code == 200
    assert httpx.get(server.url + "/api/v1/insights/flagged").status_code == 401
    bad = server.http.get("/api/v1/insights/flagged", params={"since": until, "until": since})
    assert bad.status_code == 400 and "after" in bad.json()["detail"]
    assert server.http.get("/api/v1/insights/videos/nope/timeline").status_code == 404
    assert server.http.get("/api/v1/insights/concepts/no_such_concept/threshold").status_code == 404
    assert server.http.get("/api/v1/insights/concepts/weapons/threshold", params={"threshold": 2}).status_code == 422
    assert server.http.get("/api/v1/insights/subjects", params={"drill": "nope"}).status_code == 422
    drilled = server.get("/api/v1/insights/subjects", params={"drill": "overturned", **period})
    assert drilled["total"] == sum(old != new for _, _, old, new in seeded["human"]) == 3


# -- dashboard ----------------------------------------------------------------------------------------
def test_dashboard_draws_the_seeded_numbers_and_clicks_through(page, server, seeded):
    login(page, server, "/web/dashboard")
    page.wait_for_selector("body[data-dashboard=ready]")
    days = axis_of(page, "#chart-flagged")
    assert len(days) == 30 and days[-1] == str(datetime.now(timezone.utc).date())  # the default period
    flagged = series_of(page, "#chart-flagged")
    got = Counter({(d, s["name"]): n for s in flagged for d, n in zip(days, s["data"]) if n})
    assert got == expected_flagged(seeded)
    assert all(s["type"] == "bar" for s in flagged)

    ov = {c: v for c, v in zip(axis_of(page, "#chart-overturns", "yAxis"), series_of(page, "#chart-overturns")[0]["data"])}
    exp = expected_overturns(seeded)
    assert ov == pytest.approx({k: v["overturned"] / v["model_decisions"] for k, v in exp.items()})
    queue = dict(zip(axis_of(page, "#chart-queue"), [d["value"] for d in series_of(page, "#chart-queue")[0]["data"]]))
    assert queue == {s["status"]: s["count"] for s in server.get("/api/v1/insights/queue")["statuses"]}
    concepts = series_of(page, "#chart-concepts")
    names = axis_of(page, "#chart-concepts")
    for name, count, (_, lo, hi) in zip(names, concepts[0]["data"], concepts[1]["data"]):
        est = server.get(f"/api/v1/concepts/{name}/estimate")
        assert (count, lo, hi) == (est["count"], pytest.approx(est["ci95_low"]), pytest.approx(est["ci95_high"]))
    # The accessible description ECharts writes names the chart's series.
    assert "violence" in (page.get_attribute("#chart-flagged", "aria-label") or "")
    page.screenshot(path=str(artifacts_dir() / "dashboard.png"), full_page=True)

    # A flagged bar opens the review queue holding exactly that day's flagged subjects in that category.
    (d, cat), n = expected_flagged(seeded).most_common(1)[0]
    below = sum(s["data"][days.index(d)] for s in flagged[:[s["name"] for s in flagged].index(cat)])
    click_point(page, "#chart-flagged", d, below + n / 2)
    page.wait_for_url(re.compile(r"/web/queue\?.*drill=flagged"))
    assert f"day={d}" in page.url and f"category={cat}" in page.url
    page.wait_for_function(f"document.getElementById('page-info').textContent.endsWith('of {n}')")
    cards = page.locator("#queue figure.card")
    assert cards.count() == n
    want = {r["subject_id"] for dd, r in seeded["model"] if str(dd) == d and r["status"] in ("rejected", "review")
            and cat in {_top(x) for x in r["reasons"] if x.get("category")}}
    assert set(page.eval_on_selector_all("#queue figure.card", "els => els.map(e => e.dataset.id)")) == want
    assert "flagged by the model" in page.inner_text("#drill-banner")
    page.wait_for_function("[...document.querySelectorAll('#queue img')].every(i => i.dataset.thumb !== 'loading')")
    page.screenshot(path=str(artifacts_dir() / "dashboard-drill-queue.png"), full_page=True)

    # An ingested point opens the SQL console with that day's rows.
    page.go_back()
    page.wait_for_selector("body[data-dashboard=ready]")
    day_b = str(seeded["day"]["batch_b"])
    click_point(page, "#chart-ingested", day_b, 8)
    page.wait_for_url(re.compile(r"/web/sql\?"))
    page.wait_for_selector("#query-status[data-status=Complete]")
    assert page.inner_text("#row-count") == "8 rows"
    assert day_b in page.input_value("#sql-editor")

    # A decisions bar opens the queue with the subjects decided that day with that status.
    page.go_back()
    page.wait_for_selector("body[data-dashboard=ready]")
    dec = series_of(page, "#chart-decisions")
    people = str(seeded["day"]["people"])
    k = [x["name"] for x in dec].index("rejected")
    n = dec[k]["data"][days.index(people)]
    assert n == expected_decisions(seeded)[(people, "rejected")] == 2
    click_point(page, "#chart-decisions", people, sum(x["data"][days.index(people)] for x in dec[:k]) + n / 2)
    page.wait_for_url(re.compile(r"drill=decided"))
    page.wait_for_function(f"document.getElementById('page-info').textContent.endsWith('of {n}')")
    assert set(page.eval_on_selector_all("#queue figure.card", "els => els.map(e => e.dataset.id)")) == \
        {s for d, s, _, new in seeded["human"] if new == "rejected"}

    # An overturn bar opens the queue with the subjects a person changed in that category.
    page.go_back()
    page.wait_for_selector("body[data-dashboard=ready]")
    cats = axis_of(page, "#chart-overturns", "yAxis")
    rates = series_of(page, "#chart-overturns")[0]["data"]
    k = max(range(len(cats)), key=lambda i: rates[i])
    click_point(page, "#chart-overturns", rates[k] / 2, cats[k])
    page.wait_for_url(re.compile(r"drill=overturned"))
    page.wait_for_selector("#queue figure.card")
    assert page.locator("#queue figure.card").count() == exp[cats[k]]["overturned"]
    for card in page.eval_on_selector_all("#queue figure.card", "els => els.map(e => e.innerText)"):
        assert "user" in card  # every subject here was decided by a person


# -- SQL console chart view ---------------------------------------------------------------------------
def test_sql_console_chart_view_keeps_its_settings_and_exports(page, server, seeded, tmp_path):
    login(page, server, "/web/sql")
    query = ("SELECT CAST(created_dt AS DATE) AS day, count(*) AS n, avg(width) AS mean_width "
             "FROM coactive_table GROUP BY 1 ORDER BY 1")
    page.fill("#sql-editor", query)
    page.click("#run")
    page.wait_for_selector("#query-status[data-status=Complete]")
    page.click("#tab-chart")
    page.wait_for_selector("#result-chart[data-drawn]")
    rows = server.sql(query)
    # Defaults: the date column on x, the numeric columns on y, a line chart.
    assert page.get_attribute("#result-chart", "data-type") == "line"
    assert page.get_attribute("#result-chart", "data-x") == "day"
    assert axis_of(page, "#result-chart") == [str(r["day"]) for r in rows]
    s = {x["name"]: x["data"] for x in series_of(page, "#result-chart")}
    assert s["n"] == [r["n"] for r in rows] and s["mean_width"] == pytest.approx([r["mean_width"] for r in rows])

    page.select_option("#chart-type", "bar")
    page.select_option("#chart-y", ["n"])
    page.wait_for_function("document.getElementById('result-chart').dataset.y === 'n'")
    page.screenshot(path=str(artifacts_dir() / "sql-chart-bar.png"), full_page=True)
    with page.expect_download() as png:
        page.click("#chart-png")
    data = Path(png.value.path()).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    with page.expect_download() as svg:
        page.click("#chart-svg")
    text = Path(svg.value.path()).read_text()
    assert text.lstrip().startswith("<svg") and "</svg>" in text and ("<rect" in text or "<path" in text)

    # Rerun: the settings hold.
    page.click("#run")
    page.wait_for_selector("#query-status[data-status=Complete]")
    page.wait_for_function("document.getElementById('result-chart').dataset.drawn >= '2'")
    assert page.get_attribute("#result-chart", "data-type") == "bar"
    assert [x["name"] for x in series_of(page, "#result-chart")] == ["n"]

    # A result of several pages: the chart holds the whole result; paging leaves chart and settings alone.
    n = len(server.sql("SELECT 1 FROM coactive_table"))
    page.fill("#sql-editor", "SELECT a.width AS w, b.height AS h FROM coactive_table a, coactive_table b ORDER BY 1, 2")
    page.click("#run")
    page.wait_for_selector("#query-status[data-status=Complete]")
    page.select_option("#chart-type", "histogram")
    page.select_option("#chart-y", ["h"])
    page.wait_for_function("document.getElementById('result-chart').dataset.type === 'histogram' && "
                           "document.getElementById('result-chart').dataset.y === 'h'")
    hist = series_of(page, "#result-chart")[0]["data"]
    assert sum(hist) == n * n and len(hist) == 20
    page.click("#tab-table")
    page.click("#next-page")
    page.wait_for_function("document.getElementById('page-info').textContent === '101–200'")
    page.click("#tab-chart")
    assert page.get_attribute("#result-chart", "data-type") == "histogram"
    assert sum(series_of(page, "#result-chart")[0]["data"]) == n * n
    page.screenshot(path=str(artifacts_dir() / "sql-chart-histogram.png"), full_page=True)


# -- concept threshold tuning -------------------------------------------------------------------------
def test_concept_threshold_drag_changes_the_flagged_count_and_saves_a_version(page, server, seeded):
    r = server.http.post("/api/v1/concepts", json={"name": "animal", "prompts": ["a photo of an animal"]})
    assert r.status_code == 201, r.text
    ids = {Path(x["path"]).stem: x["coactive_image_id"]
           for x in server.sql("SELECT coactive_image_id, path FROM coactive_table WHERE dataset = 'photos'")}
    labels = {ids["chelsea"]: "positive", ids["horse"]: "positive", ids["coffee"]: "positive",
              ids["coins"]: "negative", ids["page"]: "negative", ids["brick"]: "negative", ids["text"]: "negative"}
    r = server.http.patch("/api/v1/concepts/animal/labels", json={"labels": labels})
    assert r.status_code == 200, r.text
    version = r.json()["latest_version"]
    tuned = server.get("/api/v1/insights/concepts/animal/threshold")

    login(page, server, "/web/concepts/animal")
    page.wait_for_selector("#tune-histogram[data-drawn]")
    page.wait_for_function("document.getElementById('tune-flagged').textContent !== '–'")
    bins = series_of(page, "#tune-histogram")
    assert sum(b[2] for b in bins[0]["data"]) == tuned["scored"] == len(ids) + 4  # photos and the clip's keyframes
    assert sorted(p[2] for p in bins[1]["data"]) == sorted(i for i, v in labels.items() if v == "positive")
    assert sorted(p[2] for p in bins[2]["data"]) == sorted(i for i, v in labels.items() if v == "negative")
    assert int(page.inner_text("#tune-flagged")) == tuned["flagged"]
    page.wait_for_selector("#candidates figure.card")
    page.wait_for_function("[...document.querySelectorAll('#top img, #candidates img')].every(i => i.dataset.thumb !== 'loading')")
    page.screenshot(path=str(artifacts_dir() / "concept-threshold-before.png"), full_page=True)

    # Drag the line to the lowest labelled positive's probability (rounded down): all positives flagged.
    start = tuned["threshold"]
    target = int(min(l["prob"] for l in tuned["labels"] if l["label"] == "positive") * 100) / 100
    if abs(target - start) < 0.03:
        target = max(0.0, start - 0.2)
    box = page.locator("#tune-histogram").bounding_box()
    x0, y0 = page.evaluate("t => echarts.getInstanceByDom(document.getElementById('tune-histogram'))"
                           ".convertToPixel({gridIndex: 0}, [t, 1])", start)
    x1, _ = page.evaluate("t => echarts.getInstanceByDom(document.getElementById('tune-histogram'))"
                          ".convertToPixel({gridIndex: 0}, [t, 1])", target + 0.002)
    page.mouse.move(box["x"] + x0, box["y"] + y0)
    page.mouse.down()
    page.mouse.move(box["x"] + x1, box["y"] + y0, steps=12)
    page.mouse.up()
    page.wait_for_function(f"document.getElementById('tune-flagged').dataset.threshold === '{target:.2f}'")
    at = server.get("/api/v1/insights/concepts/animal/threshold", params={"threshold": target})
    assert int(page.inner_text("#tune-flagged")) == at["flagged"] != tuned["flagged"]
    if at["at_threshold"]["recall"] is not None:
        assert page.inner_text("#tune-recall") == f"{at['at_threshold']['recall'] * 100:.1f}%"
    if at["at_threshold"]["precision"] is not None:
        assert page.inner_text("#tune-precision") == f"{at['at_threshold']['precision'] * 100:.1f}%"
    pr = series_of(page, "#tune-pr")
    assert [[c["recall"], c["precision"]] for c in at["pr_curve"]] == pr[0]["data"]
    page.screenshot(path=str(artifacts_dir() / "concept-threshold-dragged.png"), full_page=True)

    page.click("#save-threshold")
    page.wait_for_selector("#save-status[data-status=Complete]")
    c = server.get("/api/v1/concepts/animal")
    assert c["latest_version"] == version + 1 and c["threshold"] == pytest.approx(target)
    page.wait_for_function(f"document.getElementById('concept-version').textContent === 'v{version + 1}'")
    assert server.get("/api/v1/concepts/animal/estimate")["count"] == at["flagged"]


# -- video timeline -----------------------------------------------------------------------------------
def test_video_timeline_from_the_queue_shows_scores_and_the_worst_frame(page, server, seeded):
    vid = seeded["video_id"]
    login(page, server, "/web/queue")
    page.select_option("#f-status", "any")
    page.select_option("#f-dataset", "clips")
    page.wait_for_function("document.querySelectorAll('#queue figure.card').length === 1")
    page.click("#queue a.timeline-link")
    page.wait_for_url(re.compile(rf"/web/videos/{vid}$"))
    page.wait_for_selector("body[data-timeline=ready]")
    tl = server.get(f"/api/v1/insights/videos/{vid}/timeline")
    assert len(tl["keyframes"]) == 4 and tl["series"]
    lines = series_of(page, "#timeline-chart")
    assert [s["name"] for s in lines] == [s["title"] for s in tl["series"]]
    times = [k["time_ms"] / 1000 for k in tl["keyframes"]]
    for drawn, s in zip(lines, tl["series"]):
        assert drawn["data"] == [[t, v] for t, v in zip(times, s["scores"])]
    top = tl["series"][0]["scores"]
    worst = max(range(len(top)), key=lambda i: top[i])
    assert tl["worst"]["coactive_image_id"] == tl["keyframes"][worst]["coactive_image_id"]
    mark = page.evaluate("echarts.getInstanceByDom(document.getElementById('timeline-chart'))"
                         ".getOption().series[0].markPoint.data[0].coord")
    assert mark == [times[worst], top[worst]]
    assert "worst" in page.inner_text(f"#keyframes figure[data-index='{worst}']")
    # The worst frame is shown first; a click on another point shows that keyframe.
    assert page.get_attribute("#frame-view", "data-index") == str(worst)
    other = 0 if worst != 0 else 1
    click_point(page, "#timeline-chart", times[other], top[other])
    page.wait_for_function(f"document.getElementById('frame-view').dataset.index === '{other}'")
    assert page.get_attribute("#frame-view", "data-keyframe") == tl["keyframes"][other]["coactive_image_id"]
    page.wait_for_function("document.getElementById('frame-img').dataset.thumb === 'ok'")
    page.wait_for_function("[...document.querySelectorAll('#keyframes img')].every(i => i.dataset.thumb !== 'loading')")
    page.screenshot(path=str(artifacts_dir() / "video-timeline.png"), full_page=True)
