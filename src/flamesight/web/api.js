// The server's REST API as the app uses it. Every failure becomes an
// ApiError carrying the server's own message ({"error": {"code", "message"}}).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function errorOf(status, text) {
  try {
    const body = JSON.parse(text);
    if (body && body.error) return new ApiError(status, body.error.code, body.error.message);
  } catch {
    // not JSON: fall through
  }
  return new ApiError(status, "http_error", `the server answered ${status}${text ? `: ${text.slice(0, 200)}` : ""}`);
}

const CSRF_COOKIE = "flamesight_csrf";
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** The CSRF token the server set at login (a readable cookie), or "". */
function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === CSRF_COOKIE) return decodeURIComponent(rest.join("="));
  }
  return "";
}

/**
 * The headers every request carries: X-CSRF-Token on the ones that change
 * something (the one place; uploads use it too).
 */
function withCsrf(method, headers = {}) {
  const token = csrfToken();
  if (!token || SAFE_METHODS.has((method || "GET").toUpperCase())) return headers;
  return { ...headers, "X-CSRF-Token": token };
}

/** A 401 means the server wants a login: the app shows its login page. */
function noticeStatus(status, url) {
  if (status === 401 && !String(url).startsWith("/api/login")) {
    document.dispatchEvent(new CustomEvent("flamesight:unauthenticated"));
  }
}

async function request(url, options = {}) {
  let response;
  try {
    const headers = withCsrf(options.method, options.headers);
    response = await fetch(url, { credentials: "same-origin", ...options, headers });
  } catch (error) {
    throw new ApiError(0, "network", `cannot reach the server: ${error.message}`);
  }
  if (!response.ok) {
    noticeStatus(response.status, url);
    throw errorOf(response.status, await response.text());
  }
  return response;
}

function postJson(url, body) {
  return request(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

export async function getJson(url) {
  return (await request(url)).json();
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export function listTraces(limit = 200) {
  return getJson(`/api/traces${query({ limit })}`);
}

export function getTrace(id) {
  return getJson(`/api/traces/${encodeURIComponent(id)}`);
}

export async function deleteTrace(id) {
  await request(`/api/traces/${encodeURIComponent(id)}`, { method: "DELETE" });
}

/**
 * Upload a file as a multipart form, reporting progress (0..1) as it goes.
 * Resolves with the new trace; rejects with the server's reason.
 */
export function uploadTrace(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/traces");
    xhr.responseType = "text";
    for (const [name, value] of Object.entries(withCsrf("POST"))) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(JSON.parse(xhr.responseText));
      } else {
        noticeStatus(xhr.status, "/api/traces");
        reject(errorOf(xhr.status, xhr.responseText));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network", "the upload failed: the server could not be reached")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "the upload was cancelled")));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

const TYPED = { int32: Int32Array, float64: Float64Array };

/** Decode the binary viewer document (see flamesight.server.viewer_routes). */
export function decodeViewer(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  if (magic !== "FSV1") throw new ApiError(0, "bad_document", "the viewer data is not in the expected format");
  const headerLength = new DataView(buffer).getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const base = 8 + headerLength;
  const arrays = {};
  for (const [name, { dtype, offset, length }] of Object.entries(header.arrays)) {
    arrays[name] = new TYPED[dtype](buffer, base + offset, length);
  }
  return { header, arrays };
}

/** Where a trace's read endpoints live (`/viewer`, `/layout`, `/top`, ...). */
export function traceData(traceId) {
  return `/api/traces/${encodeURIComponent(traceId)}`;
}

/** The same read endpoints of the one trace a share link opens. */
export function sharedData(token) {
  return `/api/shared/${encodeURIComponent(token)}`;
}

/** `data` is where the trace's read endpoints live: traceData(id) or sharedData(token). */
export async function fetchViewer(data, profile, maxSamples) {
  const response = await request(`${data}/viewer${query({ profile, max_samples: maxSamples })}`);
  return decodeViewer(await response.arrayBuffer());
}

/** A viewport laid out by the server: {view, start, end, width, start_depth, levels, function}. */
export function fetchLayout(data, profile, params) {
  return getJson(`${data}/layout${query({ profile, ...params })}`);
}

export function fetchTop(data, profile, start, end) {
  return getJson(`${data}/top${query({ profile, start, end, by: "self", n: 0 })}`);
}

// --- share links ---------------------------------------------------------------

/** The shared trace's metadata; an ApiError with status 404 when the link is unknown or revoked. */
export function getShared(token) {
  return getJson(sharedData(token));
}

/** A new share link ({id, token, url, created_at}): its token is shown only now. */
export async function createShareLink(traceId) {
  return (await request(`${traceData(traceId)}/share`, { method: "POST" })).json();
}

/** The trace's share links, without their tokens: [{id, created_at}]. */
export async function listShareLinks(traceId) {
  return (await getJson(`${traceData(traceId)}/share`)).links;
}

export async function revokeShareLink(traceId, shareId) {
  await request(`${traceData(traceId)}/share/${encodeURIComponent(shareId)}`, { method: "DELETE" });
}

// --- accounts ------------------------------------------------------------------

/** Who is asking ({id, name, via, single_user}); an ApiError with status 401 when a login is needed. */
export async function getMe() {
  let response;
  try {
    response = await fetch("/api/me", { credentials: "same-origin" });
  } catch (error) {
    throw new ApiError(0, "network", `cannot reach the server: ${error.message}`);
  }
  if (!response.ok) throw errorOf(response.status, await response.text());
  return response.json();
}

export async function logIn(name, password) {
  return (await postJson("/api/login", { name, password })).json();
}

export async function logOut() {
  await request("/api/logout", { method: "POST" });
}

// --- Send to LLM ---------------------------------------------------------------

export async function listPrompts() {
  return (await getJson("/api/prompts")).prompts;
}

export async function listAnalyses(traceId) {
  return (await getJson(`/api/traces/${encodeURIComponent(traceId)}/analyses`)).analyses;
}

export async function getAnalysisMarkdown(analysis) {
  return (await request(analysis.markdown_url)).text();
}

/**
 * POST analyze and read its server-sent events: `onText(piece)` for each
 * piece of the answer; resolves with the stored analysis (the `done` event).
 * A failure before the stream or an `error` event rejects with the server's message.
 */
export async function analyzeTrace(traceId, body, onText, signal) {
  const response = await request(`/api/traces/${encodeURIComponent(traceId)}/analyze`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
    signal,
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let done = null;
  const handle = (block) => {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (!data.length) return;
    const document_ = JSON.parse(data.join("\n"));
    if (event === "text") onText(document_.text);
    else if (event === "done") done = document_;
    else if (event === "error") {
      const error = document_.error || {};
      throw new ApiError(502, error.code || "model_failed", error.message || "the model failed");
    }
  };
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "network", `the answer was cut off: ${error.message}`);
    }
    if (chunk.done) break;
    buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      handle(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
    }
  }
  if (buffer.trim()) handle(buffer);
  if (!done) throw new ApiError(0, "incomplete", "the answer ended before the server said it was complete");
  return done;
}
