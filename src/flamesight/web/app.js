// flamesight in the browser: the trace list at #/, a trace's viewer at
// #/traces/<id> (optionally ?profile=<index>&max_samples=<n>). Plain ES
// modules, no build step, nothing loaded from elsewhere.

import { getTrace } from "./api.js";
import { TraceList } from "./traces.js";
import { Viewer } from "./viewer.js";

const THEME_KEY = "flamesight.theme";

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  const button = document.querySelector("#theme-toggle");
  button.textContent = theme === "dark" ? "Light theme" : "Dark theme";
  document.dispatchEvent(new CustomEvent("flamesight:theme", { detail: theme }));
}

function initialTheme() {
  const saved = localStorage.getItem(THEME_KEY);
  if (saved === "light" || saved === "dark") return saved;
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

const tracesPage = document.querySelector("#traces-page");
const viewerPage = document.querySelector("#viewer-page");
let viewer = null;

const traceList = new TraceList(tracesPage, {
  onOpen: (trace) => {
    location.hash = `#/traces/${encodeURIComponent(trace.id)}`;
  },
});

async function route() {
  const match = location.hash.match(/^#\/traces\/([^?]+)(?:\?(.*))?$/);
  if (viewer) {
    viewer.dispose();
    viewer = null;
  }
  if (!match) {
    viewerPage.hidden = true;
    tracesPage.hidden = false;
    document.title = "flamesight";
    await traceList.refresh();
    return;
  }
  const traceId = decodeURIComponent(match[1]);
  const params = new URLSearchParams(match[2] || "");
  tracesPage.hidden = true;
  viewerPage.hidden = false;
  viewerPage.dataset.ready = "false";
  let trace = null;
  try {
    trace = await getTrace(traceId);
    document.title = `${trace.name} · flamesight`;
  } catch (error) {
    const status = viewerPage.querySelector("#viewer-status");
    status.textContent = error.message;
    status.hidden = false;
    return;
  }
  viewer = new Viewer(viewerPage, {
    traceId,
    trace,
    profile: params.get("profile") ?? undefined,
    maxSamples: params.get("max_samples") ?? undefined,
  });
  window.__flamesightViewer = viewer;
  await viewer.open(params.get("profile") ?? undefined);
}

document.querySelector("#theme-toggle").addEventListener("click", () => {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  localStorage.setItem(THEME_KEY, next);
  applyTheme(next);
});

applyTheme(initialTheme());
window.addEventListener("hashchange", route);
route();
