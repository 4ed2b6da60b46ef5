// The trace list: upload (drag and drop or the file picker, with progress),
// the caller's traces with name, format, size and date, open and delete.
// A refused upload shows the server's reason and leaves the list as it was.

import { deleteTrace, listTraces, uploadTrace } from "./api.js";
import { formatDate, formatSize } from "./format.js";

export class TraceList {
  constructor(root, { onOpen }) {
    this.root = root;
    this.onOpen = onOpen;
    this.zone = root.querySelector("#drop-zone");
    this.input = root.querySelector("#file-input");
    this.error = root.querySelector("#upload-error");
    this.progress = root.querySelector("#upload-progress");
    this.bar = root.querySelector("#upload-bar");
    this.percent = root.querySelector("#upload-percent");
    this.uploadName = root.querySelector("#upload-name");
    this.body = root.querySelector("#trace-table tbody");
    this.input.addEventListener("change", () => {
      const [file] = this.input.files;
      this.input.value = "";
      if (file) this.upload(file);
    });
    this.zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      this.zone.classList.add("dragging");
    });
    this.zone.addEventListener("dragleave", () => this.zone.classList.remove("dragging"));
    this.zone.addEventListener("drop", (event) => {
      event.preventDefault();
      this.zone.classList.remove("dragging");
      const [file] = event.dataTransfer.files;
      if (file) this.upload(file);
    });
    // A file dropped anywhere else must not make the browser navigate away.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());
  }

  async refresh() {
    const failure = this.root.querySelector("#traces-error");
    try {
      const page = await listTraces();
      failure.hidden = true;
      this.render(page.traces);
    } catch (error) {
      failure.textContent = error.message;
      failure.hidden = false;
    }
  }

  render(traces) {
    this.root.querySelector("#trace-empty").hidden = traces.length > 0;
    this.body.replaceChildren(...traces.map((trace) => this.row(trace)));
    this.root.dataset.count = String(traces.length);
  }

  row(trace) {
    const tr = document.createElement("tr");
    tr.dataset.id = trace.id;
    const cell = (text, className = "") => {
      const td = document.createElement("td");
      td.textContent = text;
      if (className) td.className = className;
      tr.append(td);
      return td;
    };
    const name = cell("", "name");
    const link = document.createElement("a");
    link.href = `#/traces/${encodeURIComponent(trace.id)}`;
    link.textContent = trace.name;
    name.append(link);
    cell(trace.format);
    cell(formatSize(trace.size), "number");
    cell(formatDate(trace.created_at));
    const actions = cell("", "actions");
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = "Open";
    open.addEventListener("click", () => this.onOpen(trace));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Delete";
    remove.className = "delete";
    remove.addEventListener("click", async () => {
      // Two clicks: the first asks, the second deletes.
      if (remove.dataset.armed !== "true") {
        remove.dataset.armed = "true";
        remove.textContent = "Really delete?";
        setTimeout(() => {
          remove.dataset.armed = "false";
          remove.textContent = "Delete";
        }, 4000);
        return;
      }
      try {
        await deleteTrace(trace.id);
      } catch (error) {
        this.showError(error.message);
      }
      await this.refresh();
    });
    actions.append(open, remove);
    return tr;
  }

  showError(message) {
    this.error.textContent = message;
    this.error.hidden = false;
  }

  async upload(file) {
    this.error.hidden = true;
    this.progress.hidden = false;
    this.uploadName.textContent = file.name;
    const show = (fraction) => {
      this.bar.value = fraction;
      this.percent.textContent = fraction < 1 ? `${Math.round(fraction * 100)}%` : "reading the profile…";
    };
    show(0);
    let trace;
    try {
      trace = await uploadTrace(file, show);
    } catch (error) {
      this.progress.hidden = true;
      this.showError(`${file.name} was not uploaded: ${error.message}`);
      return;
    }
    this.progress.hidden = true;
    await this.refresh();
    this.onOpen(trace);
  }
}
