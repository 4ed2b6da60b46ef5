// The trace list: upload (drag and drop or the file picker, with progress),
// the caller's traces with name, format, size and date, open, delete and
// share (create a read-only link, copy it, list and revoke the links).
// A refused upload shows the server's reason and leaves the list as it was.

import { createShareLink, deleteTrace, listShareLinks, listTraces, revokeShareLink, uploadTrace } from "./api.js";
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
    const share = document.createElement("button");
    share.type = "button";
    share.textContent = "Share";
    share.className = "share";
    share.setAttribute("aria-expanded", "false");
    share.addEventListener("click", () => this.toggleShare(tr, trace, share));
    actions.append(open, share, remove);
    return tr;
  }

  /** The share panel under a trace's row: a new link (copyable), the existing links, revoke. */
  async toggleShare(tr, trace, button) {
    const next = tr.nextElementSibling;
    if (next && next.classList.contains("share-row")) {
      next.remove();
      button.setAttribute("aria-expanded", "false");
      return;
    }
    button.setAttribute("aria-expanded", "true");
    const row = document.createElement("tr");
    row.className = "share-row";
    row.dataset.trace = trace.id;
    const td = document.createElement("td");
    td.colSpan = 5;
    const panel = document.createElement("div");
    panel.className = "share-panel";
    const create = document.createElement("button");
    create.type = "button";
    create.className = "share-create primary";
    create.textContent = "Create share link";
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = "Anyone with the link can view this trace, read only, until it is revoked.";
    const made = document.createElement("div");
    made.className = "share-new";
    made.hidden = true;
    const url = document.createElement("input");
    url.type = "text";
    url.readOnly = true;
    url.className = "share-url";
    url.setAttribute("aria-label", "Share link");
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "share-copy";
    copy.textContent = "Copy";
    const note = document.createElement("span");
    note.className = "hint share-note";
    note.textContent = "Shown only now: copy it.";
    made.append(url, copy, note);
    const error = document.createElement("p");
    error.className = "error share-error";
    error.setAttribute("role", "alert");
    error.hidden = true;
    const list = document.createElement("ul");
    list.className = "share-links";
    const head = document.createElement("div");
    head.className = "share-head";
    head.append(create, hint);
    panel.append(head, made, error, list);
    td.append(panel);
    row.append(td);
    tr.after(row);

    const fail = (failure) => {
      error.textContent = failure.message;
      error.hidden = false;
    };
    const load = async () => {
      try {
        const links = await listShareLinks(trace.id);
        list.replaceChildren(...links.map((link) => this.shareLinkItem(trace, link, load, fail)));
        row.dataset.links = String(links.length);
      } catch (failure) {
        fail(failure);
      }
    };
    create.addEventListener("click", async () => {
      error.hidden = true;
      create.disabled = true;
      try {
        const link = await createShareLink(trace.id);
        url.value = `${location.origin}${location.pathname}#/shared/${encodeURIComponent(link.token)}`;
        made.hidden = false;
        note.textContent = "Shown only now: copy it.";
        url.select();
      } catch (failure) {
        fail(failure);
      } finally {
        create.disabled = false;
      }
      await load();
    });
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(url.value);
      } catch {
        url.select();
        document.execCommand("copy");
      }
      note.textContent = "Copied.";
    });
    await load();
  }

  shareLinkItem(trace, link, reload, fail) {
    const item = document.createElement("li");
    item.dataset.id = link.id;
    const label = document.createElement("span");
    label.textContent = `Link created ${formatDate(link.created_at)}`;
    const revoke = document.createElement("button");
    revoke.type = "button";
    revoke.className = "share-revoke";
    revoke.textContent = "Revoke";
    revoke.addEventListener("click", async () => {
      revoke.disabled = true;
      try {
        await revokeShareLink(trace.id, link.id);
      } catch (failure) {
        fail(failure);
      }
      await reload();
    });
    item.append(label, revoke);
    return item;
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
