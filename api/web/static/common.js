// Shared by every screen: the session token, API calls with it, thumbnails, small DOM helpers.
"use strict";

const PixQL = (() => {
  const KEY = "pixql.token";
  const WHO = "pixql.who";

  class ApiError extends Error {
    constructor(status, detail, body) {
      super(detail);
      this.status = status;
      this.body = body;
    }
  }

  const token = () => sessionStorage.getItem(KEY);

  function login(clientId, secret, who) {
    sessionStorage.setItem(KEY, `${clientId}:${secret}`);
    sessionStorage.setItem(WHO, JSON.stringify(who));
  }

  function logout() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(WHO);
    location.href = "/web/login";
  }

  function toLogin() {
    const next = location.pathname + location.search;
    location.href = "/web/login?next=" + encodeURIComponent(next);
  }

  function who() {
    try { return JSON.parse(sessionStorage.getItem(WHO) || "null"); } catch { return null; }
  }

  // FastAPI's 422 detail is a list of {loc, msg}; everything else sends a string.
  function detailOf(body, status) {
    if (body && typeof body === "object" && "detail" in body) {
      const d = body.detail;
      if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
      if (typeof d === "string") return d;
      return JSON.stringify(d);
    }
    if (typeof body === "string" && body) return body;
    return `HTTP ${status}`;
  }

  async function api(method, url, body, authHeader) {
    const headers = { Accept: "application/json" };
    const auth = authHeader || (token() ? "Bearer " + token() : null);
    if (auth) headers.Authorization = auth;
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(url, init);
    } catch (e) {
      throw new ApiError(0, `cannot reach the server: ${e.message}`, null);
    }
    const text = await r.text();
    let data = text;
    try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: keep the text */ }
    if (r.status === 401 && !authHeader) {
      sessionStorage.removeItem(KEY);
      toLogin();
    }
    if (!r.ok) throw new ApiError(r.status, detailOf(data, r.status), data);
    return data;
  }

  // --- thumbnails: <img> cannot send a bearer header, so fetch them and show blob URLs ---
  const PLACEHOLDER = "/web/static/placeholder.svg";
  const MAX_PARALLEL = 6;
  let running = 0;
  const waiting = [];

  function pump() {
    while (running < MAX_PARALLEL && waiting.length) {
      const job = waiting.shift();
      if (!job.img.isConnected) continue;  // the grid was re-rendered meanwhile
      running++;
      job.run().finally(() => { running--; pump(); });
    }
  }

  // Fills `img` with the thumbnail at `url`; a missing file or any failure shows the placeholder.
  // data-thumb records the outcome (loading | ok | missing | error) for the eye and for tests.
  function thumb(img, url) {
    img.src = PLACEHOLDER;
    img.dataset.thumb = "loading";
    waiting.push({
      img,
      run: async () => {
        try {
          const r = await fetch(url, { headers: { Authorization: "Bearer " + token() } });
          if (!r.ok) {
            img.dataset.thumb = r.status === 404 ? "missing" : "error";
            let why = `HTTP ${r.status}`;
            try { why = detailOf(await r.json(), r.status); } catch { /* keep the status */ }
            img.title = why;
            img.classList.add("placeholder");
            return;
          }
          const blob = await r.blob();
          const old = img.src;
          img.src = URL.createObjectURL(blob);
          if (old.startsWith("blob:")) URL.revokeObjectURL(old);
          img.dataset.thumb = "ok";
        } catch (e) {
          img.dataset.thumb = "error";
          img.title = e.message;
          img.classList.add("placeholder");
        }
      },
    });
    // Run after the caller's synchronous code: the image may not be in the document yet.
    setTimeout(pump, 0);
  }

  const assetThumb = (img, id, size = 256) =>
    thumb(img, `/api/v1/assets/${encodeURIComponent(id)}/thumbnail?size=${size}`);
  const pathThumb = (img, path, size = 256) =>
    thumb(img, `/web/api/thumbnail?path=${encodeURIComponent(path)}&size=${size}`);

  // --- DOM ---
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v === true) node.setAttribute(k, "");
      else node.setAttribute(k, v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  let toastTimer = null;
  function toast(message, kind = "info") {
    const t = document.getElementById("toast");
    if (!t) return;
    t.textContent = message;
    t.className = `toast ${kind}`;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, kind === "error" ? 8000 : 3000);
  }

  const fmtScore = (v) => (typeof v === "number" ? v.toFixed(3) : v === null || v === undefined ? "–" : String(v));

  function fmtTime(ms) {
    if (ms === null || ms === undefined) return "";
    const s = ms / 1000;
    const m = Math.floor(s / 60);
    return `${m}:${(s - m * 60).toFixed(1).padStart(4, "0")}`;
  }

  const canWrite = () => { const w = who(); return !!w && (w.scope === "write" || w.scope === "admin"); };

  // Every page but the login page needs a token; show who is logged in.
  document.addEventListener("DOMContentLoaded", () => {
    if (document.body.dataset.needsLogin && !token()) { toLogin(); return; }
    const w = who();
    const whoEl = document.getElementById("who");
    const out = document.getElementById("logout");
    if (w && whoEl) whoEl.textContent = `${w.name} (${w.scope})`;
    if (token() && out) { out.hidden = false; out.addEventListener("click", logout); }
  });

  return { api, ApiError, login, logout, token, who, canWrite, thumb, assetThumb, pathThumb, el, toast,
           fmtScore, fmtTime, PLACEHOLDER };
})();
