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

async function request(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", ...options });
  } catch (error) {
    throw new ApiError(0, "network", `cannot reach the server: ${error.message}`);
  }
  if (!response.ok) throw errorOf(response.status, await response.text());
  return response;
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
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(JSON.parse(xhr.responseText));
      } else {
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

export async function fetchViewer(traceId, profile, maxSamples) {
  const response = await request(
    `/api/traces/${encodeURIComponent(traceId)}/viewer${query({ profile, max_samples: maxSamples })}`,
  );
  return decodeViewer(await response.arrayBuffer());
}

/** A viewport laid out by the server: {view, start, end, width, start_depth, levels, function}. */
export function fetchLayout(traceId, profile, params) {
  return getJson(`/api/traces/${encodeURIComponent(traceId)}/layout${query({ profile, ...params })}`);
}

export function fetchTop(traceId, profile, start, end) {
  return getJson(`/api/traces/${encodeURIComponent(traceId)}/top${query({ profile, start, end, by: "self", n: 0 })}`);
}
