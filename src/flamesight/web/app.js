// flamesight in the browser: the trace list at #/, a trace's viewer at
// #/traces/<id> (optionally ?profile=<index>&max_samples=<n>), the Send to
// LLM dialog and the chat on the viewer, a share link's read-only viewer at
// #/shared/<token> (no login needed), and a login page when the server
// requires accounts (GET /api/me answers 401). Plain ES modules, no build
// step, nothing loaded from elsewhere.

import { getMe, getShared, getTrace, logIn, logOut, sharedData } from "./api.js";
import { ChatWindow } from "./chat.js";
import { LlmDialog } from "./llm.js";
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
const loginPage = document.querySelector("#login-page");
const accountSlot = document.querySelector("#account-slot");
let viewer = null;
let me = null; // who is logged in (or the single-user owner); null: the login page

const chat = new ChatWindow();
const dialog = new LlmDialog({
  context: () => {
    if (!viewer || !viewer.info || viewer.shared) return null;
    return {
      traceId: viewer.traceId,
      traceName: viewer.trace ? viewer.trace.name : viewer.traceId,
      start: viewer.chartView.x0,
      end: viewer.chartView.x1,
      whole: viewer.end - viewer.start,
      origin: viewer.start,
      unit: viewer.unit,
      profile: viewer.profileIndex,
    };
  },
});

const sendButton = document.createElement("button");
sendButton.type = "button";
sendButton.id = "send-to-llm";
sendButton.className = "primary";
sendButton.textContent = "Send to LLM";
sendButton.title = "Ask a language model about the selected range";
sendButton.addEventListener("click", () => dialog.open());
document.querySelector("#toolbar-actions").append(sendButton);

const traceList = new TraceList(tracesPage, {
  onOpen: (trace) => {
    location.hash = `#/traces/${encodeURIComponent(trace.id)}`;
  },
});

const SHARED_ROUTE = /^#\/shared\/([^?]+)(?:\?(.*))?$/;

/** Read only (a share link) or the owner's viewer: the controls that change things follow. */
function setReadOnly(readOnly) {
  document.body.dataset.mode = readOnly ? "shared" : "";
  sendButton.hidden = readOnly;
  viewerPage.querySelector(".back").hidden = readOnly;
}

async function route() {
  const shared = location.hash.match(SHARED_ROUTE);
  if (me === null && !shared) {
    if (!loginPage.hidden) return;
    await start(); // the login page, unless a session turned up
    return;
  }
  const match = location.hash.match(/^#\/traces\/([^?]+)(?:\?(.*))?$/);
  if (viewer) {
    viewer.dispose();
    viewer = null;
  }
  const llmDialog = document.querySelector("#llm-dialog");
  if (llmDialog.open) llmDialog.close();
  loginPage.hidden = true;
  setReadOnly(Boolean(shared));
  if (shared) {
    await openShared(decodeURIComponent(shared[1]), new URLSearchParams(shared[2] || ""));
    return;
  }
  if (!match) {
    chat.setTrace(null);
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
    chat.setTrace(null);
    viewerPage.querySelector("#trace-name").textContent = "";
    const status = viewerPage.querySelector("#viewer-status");
    status.textContent = error.status === 404 ? `Not found: ${error.message}` : error.message;
    status.hidden = false;
    viewerPage.dataset.failed = "true";
    return;
  }
  delete viewerPage.dataset.failed;
  viewerPage.querySelector("#viewer-status").hidden = true;
  chat.setTrace(traceId);
  viewer = new Viewer(viewerPage, {
    traceId,
    trace,
    profile: params.get("profile") ?? undefined,
    maxSamples: params.get("max_samples") ?? undefined,
  });
  window.__flamesightViewer = viewer;
  await viewer.open(params.get("profile") ?? undefined);
}

/** The viewer, read only, of the one trace a share link opens. */
async function openShared(token, params) {
  chat.setTrace(null);
  tracesPage.hidden = true;
  viewerPage.hidden = false;
  viewerPage.dataset.ready = "false";
  const status = viewerPage.querySelector("#viewer-status");
  let trace;
  try {
    trace = await getShared(token);
  } catch (error) {
    viewerPage.querySelector("#trace-name").textContent = "";
    status.textContent = error.status === 404 ? "This link is not valid" : error.message;
    status.hidden = false;
    viewerPage.dataset.failed = "true";
    document.title = "flamesight";
    return;
  }
  delete viewerPage.dataset.failed;
  status.hidden = true;
  document.title = `${trace.name} · shared · flamesight`;
  viewer = new Viewer(viewerPage, {
    traceId: trace.id,
    data: sharedData(token),
    trace,
    profile: params.get("profile") ?? undefined,
    maxSamples: params.get("max_samples") ?? undefined,
    onError: (error) => {
      if (error.status === 404) status.textContent = "This link is not valid";
    },
  });
  viewer.shared = true;
  window.__flamesightViewer = viewer;
  await viewer.open(params.get("profile") ?? undefined);
}

document.querySelector("#theme-toggle").addEventListener("click", () => {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  localStorage.setItem(THEME_KEY, next);
  applyTheme(next);
});

// --- accounts ------------------------------------------------------------------

function showAccount() {
  accountSlot.replaceChildren();
  if (!me || me.single_user) return;
  const name = document.createElement("span");
  name.className = "account-name";
  name.textContent = me.name;
  const logout = document.createElement("button");
  logout.type = "button";
  logout.id = "logout";
  logout.textContent = "Log out";
  logout.addEventListener("click", async () => {
    try {
      await logOut();
    } catch {
      // the session may be gone already; the login page follows either way
    }
    showLogin();
  });
  accountSlot.append(name, logout);
}

function showLogin() {
  me = null;
  if (viewer) {
    viewer.dispose();
    viewer = null;
  }
  chat.setTrace(null);
  const llmDialog = document.querySelector("#llm-dialog");
  if (llmDialog.open) llmDialog.close();
  accountSlot.replaceChildren();
  tracesPage.hidden = true;
  viewerPage.hidden = true;
  loginPage.hidden = false;
  document.title = "Log in · flamesight";
  document.querySelector("#login-name").focus();
}

async function start() {
  try {
    me = await getMe();
  } catch (error) {
    if (error.status === 401) {
      me = null;
      if (SHARED_ROUTE.test(location.hash)) {
        accountSlot.replaceChildren();
        await route(); // a share link needs no login
      } else {
        showLogin();
      }
      return;
    }
    me = { name: "", single_user: true }; // the pages will show what is wrong
  }
  showAccount();
  await route();
}

document.querySelector("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const failure = document.querySelector("#login-error");
  const password = document.querySelector("#login-password");
  const submit = document.querySelector("#login-submit");
  failure.hidden = true;
  submit.disabled = true;
  try {
    await logIn(document.querySelector("#login-name").value.trim(), password.value);
    password.value = "";
    await start();
  } catch (error) {
    failure.textContent = error.message;
    failure.hidden = false;
  } finally {
    submit.disabled = false;
  }
});

document.addEventListener("flamesight:unauthenticated", () => {
  if (me !== null) showLogin();
});

applyTheme(initialTheme());
window.addEventListener("hashchange", route);
start();
