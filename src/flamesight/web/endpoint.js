// The model endpoint fields shared by the Send to LLM dialog and the chat:
// URL, model, and the credentials (an API key, or OAuth client credentials as
// one three-line block). The URL and model may be remembered (localStorage);
// credentials live in these inputs only: never stored, never in a cookie or a
// URL, and `clearCredentials` empties them when their window closes.

export const DEFAULT_URL = "https://api.openai.com/v1";
export const DEFAULT_MODEL = "gpt-4o";
const URL_KEY = "flamesight.llm.url";
const MODEL_KEY = "flamesight.llm.model";

let serial = 0;

function remembered(key, fallback) {
  try {
    return localStorage.getItem(key) ?? fallback;
  } catch {
    return fallback;
  }
}

function field(label, control, hint) {
  const wrap = document.createElement("label");
  wrap.className = "field";
  const name = document.createElement("span");
  name.className = "field-label";
  name.textContent = label;
  wrap.append(name, control);
  if (hint) {
    const note = document.createElement("span");
    note.className = "hint field-hint";
    note.textContent = hint;
    wrap.append(note);
  }
  return wrap;
}

export class EndpointFields {
  /** Build the fields into `container`; `onChange()` after any edit. */
  constructor(container, { onChange = () => {}, urlHint = "" } = {}) {
    const id = `endpoint-${++serial}`;
    this.onChange = onChange;
    this.url = document.createElement("input");
    this.url.type = "url";
    this.url.className = "endpoint-url";
    this.url.name = "url";
    this.url.spellcheck = false;
    this.url.value = remembered(URL_KEY, DEFAULT_URL);
    this.url.placeholder = DEFAULT_URL;
    this.model = document.createElement("input");
    this.model.type = "text";
    this.model.className = "endpoint-model";
    this.model.name = "model";
    this.model.spellcheck = false;
    this.model.value = remembered(MODEL_KEY, DEFAULT_MODEL);
    this.model.placeholder = DEFAULT_MODEL;

    const choice = document.createElement("div");
    choice.className = "auth-choice";
    choice.setAttribute("role", "radiogroup");
    this.modes = {};
    for (const [mode, text] of [["apiKey", "API key"], ["oauth", "OAuth client credentials"]]) {
      const label = document.createElement("label");
      const radio = document.createElement("input");
      radio.type = "radio";
      radio.name = `${id}-auth`;
      radio.value = mode;
      radio.className = `auth-${mode}`;
      radio.checked = mode === "apiKey";
      radio.addEventListener("change", () => this.showMode());
      label.append(radio, ` ${text}`);
      choice.append(label);
      this.modes[mode] = radio;
    }

    this.apiKey = document.createElement("input");
    this.apiKey.type = "password";
    this.apiKey.className = "endpoint-api-key";
    this.apiKey.autocomplete = "off";
    this.apiKey.spellcheck = false;
    this.apiKey.placeholder = "sk-… (empty: no key, e.g. a local server)";
    this.keyField = field("API key", this.apiKey);

    this.oauth = document.createElement("textarea");
    this.oauth.className = "endpoint-oauth";
    this.oauth.rows = 3;
    this.oauth.spellcheck = false;
    this.oauth.autocomplete = "off";
    this.oauth.placeholder = "https://login.example.com/oauth2/token\nmy-client-id\nmy-client-secret";
    const explained = document.createElement("div");
    explained.className = "oauth-format hint";
    const lines = [
      "Three lines:",
      "1. the token URL (client-credentials grant)",
      "2. CLIENT_ID",
      "3. CLIENT_SECRET",
      "The token is fetched by the server for this request and kept in memory only.",
    ];
    for (const line of lines) {
      const div = document.createElement("div");
      div.textContent = line;
      explained.append(div);
    }
    const oauthRow = document.createElement("div");
    oauthRow.className = "oauth-row";
    oauthRow.append(this.oauth, explained);
    this.oauthField = field("OAuth", oauthRow);

    for (const input of [this.url, this.model, this.apiKey, this.oauth]) {
      input.addEventListener("input", () => this.onChange());
    }
    container.append(
      field("Endpoint URL", this.url, urlHint || "OpenAI-compatible: a base URL or a …/chat/completions URL"),
      field("Model", this.model),
      choice,
      this.keyField,
      this.oauthField,
    );
    this.showMode();
  }

  get mode() {
    return this.modes.oauth.checked ? "oauth" : "apiKey";
  }

  showMode() {
    this.keyField.hidden = this.mode !== "apiKey";
    this.oauthField.hidden = this.mode !== "oauth";
    this.onChange();
  }

  /** The endpoint fields of a request: {url, model, auth?}; `url` omitted when empty. */
  value() {
    const chosen = {};
    const url = this.url.value.trim();
    const model = this.model.value.trim();
    if (url) chosen.url = url;
    if (model) chosen.model = model;
    if (this.mode === "apiKey" && this.apiKey.value.trim()) chosen.auth = { apiKey: this.apiKey.value.trim() };
    if (this.mode === "oauth" && this.oauth.value.trim()) chosen.auth = { oauth: this.oauth.value.trim() };
    return chosen;
  }

  /** A problem to fix before sending, or "" (the server checks the rest). */
  problem() {
    if (this.mode === "oauth") {
      const lines = this.oauth.value.split("\n").map((line) => line.trim()).filter(Boolean);
      if (lines.length !== 3) {
        return "The OAuth block needs exactly three lines: token URL, CLIENT_ID, CLIENT_SECRET.";
      }
    }
    return "";
  }

  /** Remember the URL and model (never the credentials). */
  remember() {
    try {
      localStorage.setItem(URL_KEY, this.url.value.trim());
      localStorage.setItem(MODEL_KEY, this.model.value.trim());
    } catch {
      // storage refused: nothing to remember then
    }
  }

  clearCredentials() {
    this.apiKey.value = "";
    this.oauth.value = "";
  }
}
