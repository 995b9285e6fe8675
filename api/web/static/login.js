// The login form: check the token against the server, keep it for this tab, go where the user was going.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login-form");
  const err = document.getElementById("login-error");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    let id = form.client_id.value.trim();
    let secret = form.client_secret.value.trim();
    // Accept the whole "client_id:client_secret" pasted into the first field.
    if (!secret && id.includes(":")) [id, secret] = [id.slice(0, id.indexOf(":")), id.slice(id.indexOf(":") + 1)];
    try {
      const who = await PixQL.api("GET", "/web/api/session", undefined, `Bearer ${id}:${secret}`);
      PixQL.login(id, secret, who);
      const next = new URLSearchParams(location.search).get("next");
      location.href = next && next.startsWith("/web/") && !next.startsWith("/web/login") ? next : "/web/queue";
    } catch (e) {
      err.textContent = e.status === 401 ? "Invalid client id or secret." : e.message;
      err.hidden = false;
    }
  });
});
