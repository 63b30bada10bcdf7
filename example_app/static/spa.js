// The single-page app: every button is one fetch() to the API on another origin.
"use strict";

const API = document.body.dataset.api;
const out = document.getElementById("out");

// One call: what the page can see of the response, or the TypeError of a CORS block.
async function call(path, init = {}) {
  const url = API + path;
  try {
    const response = await fetch(url, init);
    const headers = {};
    response.headers.forEach((value, name) => { headers[name] = value; });
    const body = await response.text();
    let json = null;
    try { json = JSON.parse(body); } catch (e) { /* not JSON */ }
    return {
      url, ok: response.ok, status: response.status, headers, body, json,
      requestId: response.headers.get("X-Request-Id"),
      internalTrace: response.headers.get("X-Internal-Trace"),
      error: null,
    };
  } catch (error) {
    // A CORS refusal: the script learns nothing but this (the reason is server-side).
    return {url, ok: false, status: null, headers: {}, body: null, json: null, error: String(error)};
  }
}

// The same fetch from a sandboxed iframe: its origin is opaque, so it sends Origin: null.
function fromSandbox(path) {
  return new Promise((resolve) => {
    const frame = document.createElement("iframe");
    frame.sandbox = "allow-scripts";
    frame.hidden = true;
    const source = `<script>
      fetch(${JSON.stringify(API + path)})
        .then((r) => parent.postMessage({ok: r.ok, status: r.status, error: null}, "*"))
        .catch((e) => parent.postMessage({ok: false, status: null, error: String(e)}, "*"));
    <\/script>`;
    window.addEventListener("message", function listener(event) {
      if (event.source !== frame.contentWindow) return;
      window.removeEventListener("message", listener);
      frame.remove();
      resolve({url: API + path, origin: "null", ...event.data});
    });
    frame.srcdoc = source;
    document.body.appendChild(frame);
  });
}

const actions = {
  get: () => call("/api/echo", {credentials: "include"}),
  put: () => call("/api/echo", {
    method: "PUT",
    credentials: "include",
    headers: {"Content-Type": "application/json", "X-Demo": "hello from the SPA"},
    body: JSON.stringify({note: "a preflighted request"}),
  }),
  patch: () => call("/api/echo", {method: "patch", credentials: "include"}),
  badHeader: () => call("/api/echo", {credentials: "include", headers: {"X-Not-Allowed": "1"}}),
  me: async () => {
    const result = await call("/api/me", {credentials: "include"});
    if (result.status === 401 && result.json && result.json.login_url) {
      // Session expired (or never started): the 401 JSON says where to log in,
      // and the login page sends the user back to this origin afterwards.
      show({...result, note: "session expired: going to the login page"});
      window.location.assign(result.json.login_url);
    }
    return result;
  },
  logout: () => call("/logout", {method: "POST", credentials: "include"}),
  boom: () => call("/api/boom", {credentials: "include"}),
  excluded: () => call("/internal/status", {credentials: "include"}),
  sandboxed: () => fromSandbox("/api/echo"),
};

function show(result) {
  out.textContent = JSON.stringify(result, null, 2);
  out.dataset.count = String(Number(out.dataset.count) + 1);
  out.dataset.status = result.status === null ? "blocked" : String(result.status);
}

document.querySelectorAll("button[data-action]").forEach((button) => {
  button.addEventListener("click", async () => {
    out.textContent = "…";
    show(await actions[button.dataset.action]());
  });
});

window.demo = {API, call, fromSandbox, actions};
