// The Send to LLM dialog: the selected range, the model endpoint and its
// credentials, the six sample prompts or a question of one's own; Send
// streams the answer (server-sent events) into the result panel as sanitised
// Markdown, with copy and save as Markdown, and the trace's earlier analyses
// one click away. Credentials are cleared whenever the dialog closes.

import { analyzeTrace, getAnalysisMarkdown, listAnalyses, listPrompts } from "./api.js";
import { EndpointFields } from "./endpoint.js";
import { formatDate, formatRange, formatValue } from "./format.js";
import { renderMarkdown } from "./markdown.js";

function $(selector) {
  return document.querySelector(selector);
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/markdown;charset=utf-8" }));
  const anchor = document.createElement("a");
  anchor.href = url;
  anchor.download = name;
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    return copied;
  }
}

export class LlmDialog {
  /** `context()` answers {traceId, traceName, start, end, whole, unit, profile} for the open viewer. */
  constructor({ context }) {
    this.context = context;
    this.dialog = $("#llm-dialog");
    this.answer = $("#llm-answer");
    this.status = $("#llm-status");
    this.error = $("#llm-error");
    this.text = "";
    this.analysis = null;
    this.controller = null;
    this.endpoint = new EndpointFields($("#llm-endpoint"));
    this.presetsLoaded = false;
    $("#llm-send").addEventListener("click", () => this.send());
    $("#llm-stop").addEventListener("click", () => this.controller?.abort());
    $("#llm-close").addEventListener("click", () => this.close());
    $("#llm-copy").addEventListener("click", () => this.copy());
    $("#llm-save").addEventListener("click", () => this.save());
    $("#llm-custom").addEventListener("input", () => {
      $("#llm-custom-choice").checked = true;
    });
    // Closing (the Close button, Escape) forgets the credentials and stops a running answer.
    this.dialog.addEventListener("close", () => {
      this.endpoint.clearCredentials();
      this.controller?.abort();
    });
  }

  close() {
    this.endpoint.clearCredentials();
    this.dialog.close();
  }

  async open() {
    const context = this.context();
    if (!context) return;
    this.traceId = context.traceId;
    const span = context.end - context.start;
    $("#llm-range").textContent = formatRange(span, context.whole, context.unit);
    $("#llm-range-detail").textContent =
      `from ${formatValue(context.start - context.origin, context.unit)} to ` +
      `${formatValue(context.end - context.origin, context.unit)} of ${context.traceName}`;
    this.error.hidden = true;
    this.endpoint.clearCredentials();
    if (!this.dialog.open) this.dialog.showModal();
    this.dialog.dataset.state = this.dialog.dataset.state || "idle";
    await Promise.all([this.loadPresets(), this.loadHistory()]);
  }

  async loadPresets() {
    if (this.presetsLoaded) return;
    try {
      const presets = await listPrompts();
      const box = $("#llm-presets");
      box.replaceChildren(
        ...presets.map((preset) => {
          const label = document.createElement("label");
          label.className = "preset";
          const radio = document.createElement("input");
          radio.type = "radio";
          radio.name = "llm-prompt";
          radio.value = String(preset.number);
          radio.checked = preset.number === 1;
          label.append(radio, ` ${preset.text}`);
          return label;
        }),
      );
      this.presetsLoaded = true;
    } catch (error) {
      this.showError(`The sample prompts could not be loaded: ${error.message}`);
    }
  }

  async loadHistory() {
    const list = $("#llm-history-list");
    try {
      const analyses = await listAnalyses(this.traceId);
      $("#llm-history-count").textContent = String(analyses.length);
      list.replaceChildren(
        ...analyses.map((analysis) => {
          const item = document.createElement("li");
          const button = document.createElement("button");
          button.type = "button";
          button.className = "link-button";
          button.dataset.id = analysis.id;
          button.textContent = `${formatDate(analysis.created_at)}: ${analysis.prompt}`;
          button.title = `${analysis.model || ""} · ${analysis.range || ""}`;
          button.addEventListener("click", () => this.showAnalysis(analysis));
          item.append(button);
          return item;
        }),
      );
    } catch (error) {
      list.replaceChildren();
      $("#llm-history-count").textContent = "?";
    }
  }

  showAnalysis(analysis) {
    this.analysis = analysis;
    this.text = analysis.answer || "";
    renderMarkdown(this.answer, this.text);
    $("#llm-result-title").textContent = analysis.prompt || "Answer";
    this.status.textContent = `${formatDate(analysis.created_at)} · ${analysis.model || ""}`;
    this.setResultButtons(true);
  }

  chosenPrompt() {
    const chosen = this.dialog.querySelector("input[name=llm-prompt]:checked");
    if (!chosen || chosen.value === "custom") {
      const text = $("#llm-custom").value.trim();
      return text ? { prompt: text } : null;
    }
    return { preset: Number(chosen.value) };
  }

  showError(message) {
    this.error.textContent = message;
    this.error.hidden = false;
  }

  setResultButtons(enabled) {
    $("#llm-copy").disabled = !enabled;
    $("#llm-save").disabled = !enabled;
  }

  setBusy(busy) {
    $("#llm-send").disabled = busy;
    $("#llm-stop").hidden = !busy;
    this.dialog.dataset.state = busy ? "streaming" : this.dialog.dataset.state;
  }

  async send() {
    this.error.hidden = true;
    const context = this.context();
    const prompt = this.chosenPrompt();
    if (!prompt) {
      this.showError("Pick a sample prompt or write your own question.");
      return;
    }
    const problem = this.endpoint.problem();
    if (problem) {
      this.showError(problem);
      return;
    }
    this.endpoint.remember();
    const body = {
      start: context.start,
      end: context.end,
      profile: String(context.profile),
      ...prompt,
      ...this.endpoint.value(),
    };
    this.text = "";
    this.analysis = null;
    this.answer.replaceChildren();
    $("#llm-result-title").textContent = "Answer";
    this.status.textContent = "Waiting for the model…";
    this.setResultButtons(false);
    this.setBusy(true);
    this.controller = new AbortController();
    let pending = false;
    const paint = () => {
      pending = false;
      renderMarkdown(this.answer, this.text);
      this.answer.scrollTop = this.answer.scrollHeight;
    };
    try {
      const analysis = await analyzeTrace(
        this.traceId,
        body,
        (piece) => {
          this.text += piece;
          this.status.textContent = "Answering…";
          if (!pending) {
            pending = true;
            requestAnimationFrame(paint);
          }
        },
        this.controller.signal,
      );
      this.analysis = analysis;
      this.text = analysis.answer ?? this.text;
      paint();
      const tokens = analysis.usage ? ` · ${analysis.usage.total_tokens.toLocaleString("en-US")} tokens` : "";
      this.status.textContent = `Done in ${analysis.duration_seconds.toFixed(1)} s · ${analysis.model}${tokens}`;
      this.dialog.dataset.state = "done";
      this.setResultButtons(true);
      await this.loadHistory();
    } catch (error) {
      if (error.name === "AbortError") {
        this.status.textContent = "Stopped.";
        this.dialog.dataset.state = "stopped";
      } else {
        this.status.textContent = "";
        this.showError(error.message);
        this.dialog.dataset.state = "failed";
      }
      if (this.text) {
        paint();
        this.setResultButtons(true);
      }
    } finally {
      this.controller = null;
      this.setBusy(false);
    }
  }

  async copy() {
    const copied = await copyText(this.text);
    this.status.textContent = copied ? "Copied to the clipboard." : "The browser refused to copy.";
  }

  async save() {
    if (this.analysis) {
      try {
        download(`analysis-${this.analysis.id}.md`, await getAnalysisMarkdown(this.analysis));
        return;
      } catch (error) {
        this.showError(error.message);
      }
    }
    download("analysis.md", this.text);
  }
}
