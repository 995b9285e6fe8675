"""The web page in a real browser: Playwright drives Debian's Chromium against a real `pixql serve`.

One server per module (a subprocess on 127.0.0.1 over a temporary warehouse
holding the bundled photos, one of them deleted from disk afterwards), one
write-scope token made with `pixql token create`.  Screenshots of the screens go
to $PIXQL_ARTIFACTS (default ./artifacts/web), which git ignores.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from videogen import make_video

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
PIXQL = [sys.executable, "-m", "api.cli"]
GONE = "rocket"  # this photo's file is deleted after ingest: its thumbnail must be a placeholder


def artifacts_dir() -> Path:
    d = Path(os.environ.get("PIXQL_ARTIFACTS", REPO / "artifacts")) / "web"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args, root: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([*PIXQL, *args, "--root", str(root)], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout


class Server:
    def __init__(self, root: Path, port: int, client_id: str, secret: str, log: Path):
        self.root, self.port, self.client_id, self.secret, self.log = root, port, client_id, secret, log
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=60,
                                 headers={"Authorization": f"Bearer {client_id}:{secret}"})

    def get(self, path, **kw):
        r = self.http.get(path, **kw)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def sql(self, query: str) -> list[dict]:
        r = self.http.post("/api/v1/queries", json={"query": query})
        assert r.status_code == 201, r.text
        rec = self.get(f"/api/v1/queries/{r.json()['query_id']}", params={"wait": 30, "limit": 1000})
        assert rec["status"] == "Complete", rec
        return [d["data"] for d in rec["results"]["data"]]


@pytest.fixture(scope="module")
def server(tmp_path_factory, photo_dir):
    from warehouse import Warehouse

    base = tmp_path_factory.mktemp("web")
    photos = shutil.copytree(photo_dir, base / "photos")
    root = base / "pixql-data"
    clips = base / "clips"
    clips.mkdir()
    make_video(clips / "clip.mp4", seconds=4, rate=10, width=160, height=120, shape_at={2})
    with Warehouse.open(root) as wh:
        wh.ingest([str(photos)], dataset="photos", progress=False)
        wh.ingest([str(clips)], dataset="clips", progress=False)
    for p in photos.glob(f"{GONE}.*"):
        p.unlink()

    out = _cli("token", "create", "web-test", "--scope", "write", root=root)
    client_id = re.search(r"client_id:\s+(\S+)", out).group(1)
    secret = re.search(r"client_secret:\s+(\S+)", out).group(1)

    out = _cli("token", "create", "web-reader", "--scope", "read", root=root)
    reader = (re.search(r"client_id:\s+(\S+)", out).group(1), re.search(r"client_secret:\s+(\S+)", out).group(1))

    port = _free_port()
    log = base / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen([*PIXQL, "serve", "--port", str(port), "--root", str(root), "--log-level", "warning"],
                                stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    srv = Server(root, port, client_id, secret, log)
    srv.reader = reader
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"pixql serve exited: {log.read_text()}"
        try:
            if httpx.get(srv.url + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"pixql serve did not come up: {log.read_text()}"
        time.sleep(0.2)
    deadline = time.monotonic() + 180
    while httpx.get(srv.url + "/ready", timeout=5).status_code != 200:  # the default encoder has loaded
        assert proc.poll() is None and time.monotonic() < deadline, f"pixql serve is not ready: {log.read_text()}"
        time.sleep(0.5)
    yield srv
    srv.http.close()
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(30_000)
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def login(page, server, then: str = "/web/queue", token: tuple[str, str] | None = None):
    client_id, secret = token or (server.client_id, server.secret)
    page.goto(then)
    page.wait_for_url(re.compile(r"/web/login"))
    page.fill("#client-id", client_id)
    page.fill("#client-secret", secret)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(then) + r"(\?.*)?$"))


# -- login ------------------------------------------------------------------------------------------
def test_login_rejects_a_wrong_secret_then_accepts_the_token(page, server):
    page.goto("/web/sql")
    page.wait_for_url(re.compile(r"/web/login\?next="))
    page.fill("#client-id", server.client_id)
    page.fill("#client-secret", "not-the-secret")
    page.click("button[type=submit]")
    page.locator("#login-error").wait_for(state="visible")
    assert "Invalid" in page.inner_text("#login-error")
    assert page.evaluate("sessionStorage.getItem('pixql.token')") is None

    page.fill("#client-secret", server.secret)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/web/sql$"))  # back where the user was going
    assert page.evaluate("sessionStorage.getItem('pixql.token')") == f"{server.client_id}:{server.secret}"
    assert "web-test (write)" in page.inner_text("#who")


def test_data_behind_the_page_needs_the_token(server):
    anon = httpx.get(server.url + "/web/api/session")
    assert anon.status_code == 401
    assert httpx.get(server.url + "/web/api/thumbnail", params={"path": "/etc/passwd"}).status_code == 401
    # With a token, a path the catalog does not hold is a 404, never a file read.
    assert server.http.get("/web/api/thumbnail", params={"path": "/etc/passwd"}).status_code == 404
    assert server.http.get("/web/static/..%2Fapi%2Fweb%2Frouter.py").status_code == 404
    shell = httpx.get(server.url + "/web/sql")
    assert shell.status_code == 200 and "SQL console" in shell.text
    assert "http://" not in shell.text.replace(server.url, "") and "https://" not in shell.text  # nothing from a CDN


# -- SQL console --------------------------------------------------------------------------------------
def test_sql_console_runs_a_query_and_shows_the_image_grid(page, server):
    login(page, server, "/web/sql")
    page.fill("#sql-editor", "SELECT coactive_image_id, path, width FROM coactive_table ORDER BY path")
    page.click("#run")
    page.wait_for_selector("#query-status[data-status=Complete]")
    expected = server.sql("SELECT coactive_image_id, path FROM coactive_table ORDER BY path")
    cards = page.locator("#result-grid figure.card")
    assert cards.count() == len(expected) >= 6
    # Every thumbnail settles: real images for files on disk, the placeholder for the deleted one.
    page.wait_for_function("[...document.querySelectorAll('#result-grid img')].every(i => i.dataset.thumb !== 'loading')")
    states = page.eval_on_selector_all("#result-grid img", "els => els.map(e => [e.alt, e.dataset.thumb, e.naturalWidth])")
    by_id = {row["coactive_image_id"]: row["path"] for row in expected}
    for alt, state, width in states:
        if Path(by_id[alt]).stem == GONE:
            assert state == "missing"
        else:
            assert state == "ok" and width > 0
    page.screenshot(path=str(artifacts_dir() / "sql-console.png"), full_page=True)

    page.click("#tab-table")
    assert page.locator("#result-table tbody tr").count() == len(expected)
    assert page.locator("#result-grid").is_hidden()


def test_sql_console_similar_link_orders_by_similarity_to_that_image(page, server):
    login(page, server, "/web/sql")
    page.fill("#sql-editor", "SELECT coactive_image_id, path FROM coactive_table WHERE dataset = 'photos' "
                             "ORDER BY path DESC LIMIT 3")
    page.click("#run")
    page.wait_for_selector("#query-status[data-status=Complete]")
    first = page.locator("#result-grid figure.card img").first.get_attribute("alt")
    page.locator("#result-grid .similar-link").first.click()
    page.wait_for_function("document.querySelector('#sql-editor').value.includes('similarity_to_asset')")
    page.wait_for_selector("#query-status[data-status=Complete]")
    expected = server.sql(f"SELECT coactive_image_id FROM coactive_table "
                          f"ORDER BY similarity_to_asset(coactive_image_id, '{first}') DESC NULLS LAST LIMIT 24")
    alts = page.eval_on_selector_all("#result-grid figure.card img", "els => els.map(e => e.alt)")
    assert alts[0] == first and len(alts) == len(expected)
    assert alts[:3] == [r["coactive_image_id"] for r in expected][:3]


def test_sql_console_shows_sandbox_and_duckdb_errors(page, server):
    login(page, server, "/web/sql")
    page.fill("#sql-editor", "DROP TABLE coactive_table")
    page.click("#run")
    page.wait_for_selector("#query-status[data-status=Rejected]")
    assert page.inner_text("#query-error").strip()

    page.fill("#sql-editor", "SELECT no_such_column FROM coactive_table")
    page.click("#run")
    page.wait_for_selector("#query-status[data-status=Error], #query-status[data-status=Rejected]")
    assert "no_such_column" in page.inner_text("#query-error")
    page.screenshot(path=str(artifacts_dir() / "sql-console-error.png"))


def test_sql_console_stop_button_stops_a_running_query(page, server):
    login(page, server, "/web/sql")
    # A cross join of the photos eight times over: billions of rows, runs until stopped.
    tables = ", ".join(f"coactive_table t{i}" for i in range(8))
    page.fill("#sql-editor", f"SELECT count(*) FROM {tables}")
    page.click("#run")
    page.wait_for_selector("#query-status[data-status=Running]")
    assert page.is_enabled("#stop")
    page.click("#stop")
    page.wait_for_selector("#query-status[data-status=Stopped]")
    assert page.is_enabled("#run")
    stopped = server.get("/api/v1/queries", params={"status": "Stopped"})["queries"]
    assert any("t7" in q["query"] for q in stopped)


# -- review queue -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moderated(server):
    """Every photo and the video moderated under a policy whose wide review band sends them to review."""
    # open_nsfw and NudeNet now score every photo a little for nudity (explicit_nudity, suggestive):
    # the test's policy ignores those two so the queue holds the categories the assertions name.
    r = server.http.post("/api/v1/policies", json={"name": "triage", "review_band": 0.5,
                                                   "thresholds": {"explicit_nudity": "ignore", "suggestive": "ignore"},
                                                   "description": "everything scored goes to a human"})
    assert r.status_code == 201, r.text
    photos = server.sql("SELECT coactive_image_id FROM coactive_table WHERE dataset = 'photos'")
    video = server.sql("SELECT DISTINCT coactive_video_id FROM coactive_table_adv WHERE dataset = 'clips'")
    items = [{"coactive_image_id": p["coactive_image_id"]} for p in photos]
    items.append({"coactive_video_id": video[0]["coactive_video_id"]})
    r = server.http.post("/api/v1/moderate", json={"items": items, "policy": "triage"})
    assert r.status_code == 200, r.text
    results = r.json()["results"] if isinstance(r.json(), dict) else r.json()
    assert {x["status"] for x in results} <= {"review", "rejected", "approved"}
    return results


def test_review_queue_approve_by_click_and_by_key(page, server, moderated):
    in_review = server.get("/api/v1/moderation", params={"status": "review", "limit": 1000})
    assert in_review["total"] >= 3, in_review
    login(page, server, "/web/queue")
    page.wait_for_selector("#queue figure.card")
    cards = page.locator("#queue figure.card")
    assert cards.count() == min(24, in_review["total"])
    # Each card names the categories that sent it to review, most severe first, with their scores.
    shown = page.eval_on_selector_all(
        "#queue figure.card", "els => els.map(e => [e.dataset.id, [...e.querySelectorAll('span.tag[title*=threshold]')]"
        ".map(t => t.textContent)])")
    by_id = {x["subject_id"]: x for x in moderated}
    for subject, tags in shown:
        top = by_id[subject]["categories"][0]
        assert tags and tags[0].endswith(f"{top['category']} {top['score']:.3f}"), (tags, top)
    page.wait_for_function("[...document.querySelectorAll('#queue img')].every(i => i.dataset.thumb !== 'loading')")
    page.screenshot(path=str(artifacts_dir() / "review-queue.png"), full_page=True)

    first = cards.nth(0)
    first_id = first.get_attribute("data-id")
    first.locator("button.approve").click()
    page.wait_for_selector(f'#queue figure.card[data-id="{first_id}"][data-decided="approved"]')
    decision = server.get(f"/api/v1/assets/{first_id}/moderation")
    assert decision["status"] == "approved" and decision["decided_by"] == "user"
    assert decision["history"][0]["user"] == "web-test"

    # The focus moved to the next card; 'r' rejects it without touching the mouse.
    second_id = cards.nth(1).get_attribute("data-id")
    assert "focused" in cards.nth(1).get_attribute("class")
    page.keyboard.press("r")
    page.wait_for_selector(f'#queue figure.card[data-id="{second_id}"][data-decided="rejected"]')
    assert server.get(f"/api/v1/assets/{second_id}/moderation")["status"] == "rejected"

    # Reloaded, the queue no longer holds them.
    page.reload()
    page.wait_for_selector("#queue figure.card")
    ids = page.eval_on_selector_all("#queue figure.card", "els => els.map(e => e.dataset.id)")
    assert first_id not in ids and second_id not in ids
    assert server.get("/api/v1/moderation", params={"status": "review"})["total"] == in_review["total"] - 2


def test_review_queue_filters_paging_and_video_worst_frame(page, server, moderated):
    login(page, server, "/web/queue")
    page.wait_for_selector("#queue figure.card")
    # The video shows the keyframe where its top category scored highest, and that time.
    video = [x for x in moderated if x.get("subject_kind") == "video"][0]
    status = server.get(f"/api/v1/assets/{video['subject_id']}/moderation")["status"]  # another test may have decided
    page.select_option("#f-status", status)
    page.select_option("#f-dataset", "clips")
    page.wait_for_function("new URLSearchParams(location.search).get('dataset') === 'clips'")
    page.wait_for_function("document.querySelectorAll('#queue figure.card').length === 1")
    worst = video["categories"][0]
    frame = page.locator("#queue figure.card [data-frame-time]")
    assert float(frame.get_attribute("data-frame-time")) == pytest.approx(worst["time"])
    assert "worst frame at" in frame.inner_text()
    page.wait_for_function("document.querySelector('#queue img').dataset.thumb === 'ok'")
    kf_id = page.get_attribute("#queue img", "alt")
    assert kf_id == video["subject_id"]  # the card is the video; its image is the worst keyframe
    img_src_ok = page.evaluate("document.querySelector('#queue img').naturalWidth > 0")
    assert img_src_ok

    # The photo whose file was deleted is in the queue too, with a placeholder instead of its image.
    gone = [x for x in moderated if Path(x.get("path") or "").stem == GONE][0]
    page.select_option("#f-status", server.get(f"/api/v1/assets/{gone['subject_id']}/moderation")["status"])
    page.select_option("#f-dataset", "photos")
    card = page.locator(f'#queue figure.card[data-id="{gone["subject_id"]}"]')
    card.wait_for()
    page.wait_for_function(f"document.querySelector('#queue figure.card[data-id=\"{gone['subject_id']}\"] img')"
                           ".dataset.thumb === 'missing'")
    assert card.locator("img").get_attribute("src").endswith("placeholder.svg")

    # Category filter: only items whose triggering categories include it (or its children).
    page.select_option("#f-status", "review")
    page.select_option("#f-dataset", "")
    top = [x for x in moderated if x["status"] == "review" and x.get("categories")][0]["categories"][0]
    page.select_option("#f-category", top["category"])
    page.wait_for_function(f"new URLSearchParams(location.search).get('category') === '{top['category']}'")
    page.wait_for_selector("#queue figure.card")
    for tags in page.eval_on_selector_all("#queue figure.card", "els => els.map(e => e.innerText)"):
        assert top["category"] in tags

    # Paging with 24 per page over the whole review queue, and 'n' for the next page.
    page.select_option("#f-category", "")
    total = server.get("/api/v1/moderation", params={"status": "review"})["total"]
    page.wait_for_function(f"document.getElementById('page-info').textContent.endsWith('of {total}')")
    if total > 24:
        page.keyboard.press("n")
        page.wait_for_function("document.getElementById('page-info').textContent.startsWith('25')")


# -- concept labelling ------------------------------------------------------------------------------
def test_concept_labelling_trains_a_new_version(page, server):
    r = server.http.post("/api/v1/concepts", json={"name": "animal", "prompts": ["an animal"],
                                                   "description": "animals of any kind"})
    assert r.status_code == 201, r.text
    before = server.get("/api/v1/concepts/animal/estimate")
    assert before["version"] == 1

    login(page, server, "/web/concepts")
    page.wait_for_selector('#concept-list tr[data-concept="animal"]')
    page.click('#concept-list tr[data-concept="animal"] a')
    page.wait_for_url(re.compile(r"/web/concepts/animal$"))
    page.wait_for_selector("#candidates figure.card")
    page.wait_for_selector("#top figure.card")
    assert page.inner_text("#concept-version") == "v1"
    assert page.get_attribute("#concept-estimate", "data-version") == "1"
    # The top-scoring list is the concept's highest probabilities, in order.
    top_ids = page.eval_on_selector_all("#top figure.card", "els => els.map(e => e.dataset.asset)")
    expected = server.sql("SELECT coactive_image_id FROM coactive_table "
                          "ORDER BY animal_latest_prob DESC, coactive_image_id LIMIT 12")
    assert top_ids == [r["coactive_image_id"] for r in expected]

    # The two animal photos are positives; two photos of no animal among the candidates are negatives.
    ids = {Path(r["path"]).stem: r["coactive_image_id"]
           for r in server.sql("SELECT coactive_image_id, path FROM coactive_table WHERE dataset = 'photos'")}
    positives = [ids["chelsea"], ids["horse"]]
    shown = set(top_ids) | set(page.eval_on_selector_all("#candidates figure.card", "els => els.map(e => e.dataset.asset)"))
    assert set(positives) <= shown
    negatives = [ids[n] for n in ("coins", "page", "text", "brick", "gravel", "grass") if ids[n] in shown][:2]
    for i in positives:
        page.locator(f'figure.card[data-asset="{i}"] button.positive').first.click()
    for i in negatives:
        page.locator(f'figure.card[data-asset="{i}"] button.negative').first.click()
    assert page.inner_text("#pending-count") == "4"
    page.wait_for_function("document.querySelectorAll('#top img, #candidates img').length > 0 && "
                           "[...document.querySelectorAll('#top img, #candidates img')].every(i => i.dataset.thumb !== 'loading')")
    page.screenshot(path=str(artifacts_dir() / "concept-labelling-before.png"), full_page=True)

    page.click("#retrain")
    page.wait_for_selector("#train-status[data-status=Complete]")
    assert page.inner_text("#concept-version") == "v2"
    assert page.get_attribute("#concept-estimate", "data-version") == "2"
    assert page.inner_text("#concept-estimate-before") != "–"  # the estimate before retraining stays in view
    assert page.locator('#versions tr[data-version="2"]').count() == 1

    after = server.get("/api/v1/concepts/animal")
    assert after["latest_version"] == 2
    assert (after["positive_labels"], after["negative_labels"]) == (2, 2)
    labels = {x["coactive_image_id"]: x["label"] for x in server.get("/api/v1/concepts/animal/labels")}
    assert labels == {**{i: "positive" for i in positives}, **{i: "negative" for i in negatives}}
    assert server.get("/api/v1/concepts/animal/estimate")["version"] == 2
    # Labelled assets leave the candidate list.
    page.wait_for_selector("#candidates figure.card")
    shown = page.eval_on_selector_all("#candidates figure.card", "els => els.map(e => e.dataset.asset)")
    assert not set(shown) & set(labels)
    page.wait_for_function("[...document.querySelectorAll('#top img, #candidates img')].every(i => i.dataset.thumb !== 'loading')")
    page.screenshot(path=str(artifacts_dir() / "concept-labelling.png"), full_page=True)

    # The SQL console lists the new concept's columns beside the editor.
    page.goto("/web/sql")
    page.wait_for_selector('#concept-columns li[data-concept="animal"]')


def test_sql_console_pages_rows_without_images_as_a_table(page, server):
    login(page, server, "/web/sql")
    n = len(server.sql("SELECT 1 FROM coactive_table"))
    page.fill("#sql-editor", "SELECT a.width AS w, b.height AS h FROM coactive_table a, coactive_table b ORDER BY 1, 2")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#query-status[data-status=Complete]")
    assert page.locator("#tab-grid").is_hidden()  # no id or path column: no image grid
    assert page.locator("#result-table tbody tr").count() == 100
    assert page.inner_text("#page-info") == "1–100"
    page.click("#next-page")
    page.wait_for_function("document.getElementById('page-info').textContent === '101–200'")
    first = page.inner_text("#result-table tbody tr:first-child td:first-child")
    assert first == "101"
    assert page.inner_text("#row-count") == f"{n * n} rows"


def test_a_read_token_browses_but_cannot_decide(page, server, moderated):
    login(page, server, "/web/queue", token=server.reader)
    assert "web-reader (read)" in page.inner_text("#who")
    page.wait_for_selector("#queue figure.card")
    assert page.locator("#queue button.approve:enabled, #queue button.reject:enabled").count() == 0
    # The keys do nothing either; the API would refuse (403) in any case.
    first = page.get_attribute("#queue figure.card", "data-id")
    before = server.get(f"/api/v1/assets/{first}/moderation")["history"]
    page.keyboard.press("a")
    assert page.get_attribute("#queue figure.card", "data-decided") is None
    assert server.get(f"/api/v1/assets/{first}/moderation")["history"] == before
