// The seed documents' situations, one function each. The demo page's buttons and the
// browser tests (tests/test_edge.py) run the same functions.
"use strict";

const URLS = JSON.parse(document.body.dataset.urls);
const api = (mode, path) => URLS[mode].replace(/\/$/, "") + path;

async function call(url, init = {}) {
  try {
    const response = await fetch(url, init);
    const body = await response.text();
    let json = null;
    try { json = JSON.parse(body); } catch (e) { /* not JSON */ }
    return {ok: response.ok, status: response.status, json, redirected: response.redirected,
            error: null};
  } catch (error) {  // a CORS refusal: the script learns nothing more than this
    return {ok: false, status: null, json: null, redirected: false, error: String(error)};
  }
}

const put = {method: "PUT", credentials: "include",
             headers: {"Content-Type": "application/json", "X-Demo": "1"},
             body: JSON.stringify({name: "widget"})};

window.scenarios = {
  // Access's default: the browser sends the preflight without cookies, Access refuses it.
  preflightBlocked: () => call(api("block", "/api/items"), put),
  // "Bypass OPTIONS requests to origin": the origin answers the preflight from its policy.
  preflightBypassed: () => call(api("bypass", "/api/items"), put),
  // Access answers the preflight from the application's own CORS settings (once logged in
  // to that application: run the two scenarios below first).
  preflightAtEdge: () => call(api("respond", "/api/items"), put),
  // A simple request with the cookie: its CORS headers must come from the origin.
  simpleWithCookie: () => call(api("bypass", "/api/me"), {credentials: "include"}),
  // fetch's default credentials mode ("same-origin") leaves the cookie out cross-origin.
  credentialsOmitted: () => call(api("bypass", "/api/me")),
  credentialsIncluded: () => call(api("bypass", "/api/me"), {credentials: "include"}),
  // Not logged in to this application: the login redirects turn Origin into "null".
  nullOriginChain: () => call(api("respond", "/api/me"), {credentials: "include"}),
  // "Authenticate manually": the chain left the application's cookie; a retry works.
  retryAfterLogin: () => call(api("respond", "/api/me"), {credentials: "include"}),
};

async function showEvents() {
  const found = await call(api("bypass", "/api/events"), {credentials: "include"});
  document.getElementById("events").textContent = found.json
    ? found.json.events.map((e) => `${e.time} ${e.status} ${e.reason} ${e.method} ${e.path} origin=${e.origin}`).join("\n")
    : "log in to the API to read its events";
}

document.querySelectorAll("button[data-scenario]").forEach((button) => {
  button.addEventListener("click", async () => {
    const name = button.dataset.scenario;
    const result = await window.scenarios[name]();
    document.getElementById(`out-${name}`).textContent = JSON.stringify(result);
    showEvents();
  });
});
document.getElementById("refresh").addEventListener("click", showEvents);
