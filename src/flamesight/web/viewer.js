// The viewer of one trace: the time-order flame chart (whose visible range is
// the selection), the left-heavy flame graph and the sandwich of the
// selected range, the overview strip, search, tooltips and the toolbar.
//
// Profiles up to the server's threshold arrive whole (LocalProfile, drawn
// from precomputed rows); larger ones arrive as a header only ("layout" mode)
// and every viewport is laid out by the server, the last layout being drawn
// at the current viewport until the next one arrives.

import { fetchLayout, fetchTop, fetchViewer, traceData } from "./api.js";
import { FlameCanvas, ROW_HEIGHT, themeColours } from "./flame.js";
import { formatPercent, formatRange, formatValue } from "./format.js";
import { GrowingFunctions, LocalProfile, rowsOfLayout } from "./model.js";

const AXIS_HEIGHT = 22;
const OVERVIEW_HEIGHT = 44;
const KEY_ZOOM = 2;
const PAN_FRACTION = 0.1;
const FRAME_TIMES_KEPT = 5000;
const LAYOUT_DELAY_MS = 60;

window.__flamesightFrameTimes = window.__flamesightFrameTimes || [];

function $(root, selector) {
  return root.querySelector(selector);
}

function niceStep(span, pixels, minPixels) {
  const raw = (span * minPixels) / pixels;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

export class Viewer {
  /**
   * `data` is where the trace's read endpoints live (api.js's traceData(id),
   * the default, or sharedData(token) for a share link).
   */
  constructor(root, { traceId, data, trace, profile, maxSamples, onError }) {
    this.root = root;
    this.traceId = traceId;
    this.data = data || traceData(traceId);
    this.trace = trace;
    this.requestedProfile = profile;
    this.maxSamples = maxSamples;
    this.onError = onError;
    this.view = "flamechart";
    this.chartView = { x0: 0, x1: 1, scrollTop: 0 };
    this.graphView = { x0: 0, x1: 1, scrollTop: 0 };
    this.search = "";
    this.sortKey = "total";
    this.selectedFunction = null;
    this.pending = false;
    this.disposers = [];
    this.graphFor = null; // the range the flame graph was computed for
    this.tableFor = null;
    this.layoutSerial = 0;
    this.setUp();
  }

  setUp() {
    const root = this.root;
    this.chart = new FlameCanvas($(root, "#chart"), { top: AXIS_HEIGHT });
    this.overview = new FlameCanvas(document.createElement("canvas"), { labels: false, rowHeight: 2 });
    this.overviewCanvas = $(root, "#overview");
    this.callers = new FlameCanvas($(root, "#callers"), { flip: true });
    this.callees = new FlameCanvas($(root, "#callees"));
    this.tooltip = $(root, "#tooltip");
    this.rangeText = $(root, "#range-text");
    this.palette = themeColours();
    const on = (target, type, handler, options) => {
      target.addEventListener(type, handler, options);
      this.disposers.push(() => target.removeEventListener(type, handler, options));
    };
    on(window, "resize", () => this.requestDraw(true));
    on(document, "keydown", (event) => this.onKey(event));
    on(document, "flamesight:theme", () => this.retheme());
    for (const button of root.querySelectorAll("[data-view]")) {
      on(button, "click", () => this.show(button.dataset.view));
    }
    on($(root, "#zoom-in"), "click", () => this.zoomBy(KEY_ZOOM));
    on($(root, "#zoom-out"), "click", () => this.zoomBy(1 / KEY_ZOOM));
    on($(root, "#zoom-reset"), "click", () => this.reset());
    on($(root, "#search"), "input", (event) => this.setSearch(event.target.value));
    on($(root, "#profile-select"), "change", (event) => this.open(event.target.value));
    this.bindPointer(this.chart, () => this.chartView, "chart", on);
    this.bindPointer(this.callers, null, "callers", on);
    this.bindPointer(this.callees, null, "callees", on);
    this.bindOverview(on);
    for (const header of root.querySelectorAll("#sandwich-table th[data-sort]")) {
      on(header, "click", () => {
        this.sortKey = header.dataset.sort;
        this.renderTable();
      });
    }
    on($(root, "#sandwich-table tbody"), "click", (event) => {
      const row = event.target.closest("tr[data-fn]");
      if (row) this.selectFunction(Number(row.dataset.fn));
    });
  }

  dispose() {
    for (const dispose of this.disposers) dispose();
    this.disposers = [];
    this.disposed = true;
    this.tooltip.hidden = true;
  }

  // --- loading ---------------------------------------------------------------

  async open(profile) {
    const status = $(this.root, "#viewer-status");
    status.textContent = "Loading…";
    status.hidden = false;
    let document_;
    try {
      document_ = await fetchViewer(this.data, profile, this.maxSamples);
    } catch (error) {
      status.textContent = error.message;
      if (this.onError) this.onError(error);
      return;
    }
    if (this.disposed) return;
    const { header, arrays } = document_;
    this.header = header;
    this.info = header.profile;
    this.profileIndex = header.profile.index;
    this.unit = this.info.unit;
    this.start = this.info.start;
    this.end = this.info.end > this.info.start ? this.info.end : this.info.start + 1;
    this.remote = header.mode === "layout";
    this.local = this.remote ? null : new LocalProfile(header, arrays);
    this.functions = this.remote ? new GrowingFunctions() : this.local.functions;
    this.graphFor = null;
    this.tableFor = null;
    this.selectedFunction = null;
    this.remoteChart = null;
    this.table = null;
    $(this.root, "#sandwich-flames").hidden = true;
    this.fillProfiles(header.profiles);
    $(this.root, "#trace-name").textContent = this.trace ? this.trace.name : "";
    $(this.root, "#mode-note").hidden = !this.remote;
    if (this.local) {
      this.chart.setRows(this.local.chartRows, this.functions);
      this.overview.setRows(this.local.chartRows, this.functions);
    } else {
      this.chart.setRows([], this.functions);
      this.overview.setRows([], this.functions);
      this.fetchOverview();
    }
    this.overviewDirty = true;
    this.chartView = { x0: this.start, x1: this.end, scrollTop: 0 };
    status.hidden = true;
    this.setSearch($(this.root, "#search").value);
    this.show(this.view);
    this.root.dataset.ready = "true";
  }

  fillProfiles(profiles) {
    const select = $(this.root, "#profile-select");
    select.replaceChildren(
      ...profiles.map((p) => {
        const option = document.createElement("option");
        option.value = String(p.index);
        option.textContent = `${p.name} (${p.samples.toLocaleString("en-US")} samples)`;
        return option;
      }),
    );
    select.value = String(this.profileIndex);
    select.hidden = profiles.length < 2;
  }

  // --- views -----------------------------------------------------------------

  show(view) {
    this.view = view;
    for (const button of this.root.querySelectorAll("[data-view]")) {
      button.setAttribute("aria-pressed", String(button.dataset.view === view));
    }
    $(this.root, "#chart-pane").hidden = view === "sandwich";
    $(this.root, "#sandwich-pane").hidden = view !== "sandwich";
    this.root.dataset.view = view;
    this.hideTooltip();
    if (view === "flamegraph") this.prepareGraph();
    if (view === "flamechart" && this.remote && !this.remoteChart) this.scheduleRemoteChart();
    if (view === "sandwich") this.prepareTable();
    this.requestDraw(true);
  }

  get selection() {
    return [this.chartView.x0, this.chartView.x1];
  }

  rangeKey() {
    return `${this.chartView.x0}:${this.chartView.x1}`;
  }

  prepareGraph() {
    if (this.graphFor === this.rangeKey()) return;
    const [start, end] = this.selection;
    this.graphFor = this.rangeKey();
    this.graphRows = null;
    if (this.local) {
      const graph = this.local.flameGraph(start, end);
      this.graphRows = graph.rows;
      this.graphAxisEnd = graph.axisEnd;
      this.graphView = { x0: 0, x1: graph.axisEnd, scrollTop: 0 };
      this.requestDraw();
    } else {
      const serial = (this.graphSerial = (this.graphSerial || 0) + 1);
      fetchLayout(this.data, this.profileIndex, { view: "flamegraph", start, end, width: this.chartWidth() })
        .then((layout) => {
          if (serial !== this.graphSerial || this.disposed) return;
          this.graphRows = rowsOfLayout(layout, this.functions).rows;
          this.graphAxisEnd = layout.axis_end;
          this.graphView = { x0: 0, x1: layout.axis_end, scrollTop: 0 };
          this.requestDraw();
        })
        .catch((error) => this.showError(error));
    }
  }

  chartWidth() {
    return Math.max(16, Math.round($(this.root, "#view-area").clientWidth || 1200));
  }

  // --- the selected range and the viewport --------------------------------------

  currentView() {
    return this.view === "flamegraph" ? this.graphView : this.chartView;
  }

  bounds() {
    return this.view === "flamegraph" ? [0, this.graphAxisEnd || 1] : [this.start, this.end];
  }

  setRange(x0, x1, target = this.currentView(), bounds = this.bounds()) {
    const [lo, hi] = bounds;
    const full = hi - lo;
    const minimum = full * 1e-9 || 1e-12;
    let span = Math.min(Math.max(x1 - x0, minimum), full);
    let start = x0;
    if (x1 - x0 < minimum) start = (x0 + x1) / 2 - span / 2;
    start = Math.min(Math.max(start, lo), hi - span);
    if (span >= full) {
      start = lo;
      span = full;
    }
    target.x0 = start;
    target.x1 = span >= full ? hi : start + span;
    this.rangeChanged();
    this.requestDraw();
  }

  rangeChanged() {
    if (this.view === "flamechart" && this.remote) this.scheduleRemoteChart();
  }

  zoomBy(factor, fraction = 0.5) {
    if (this.view === "sandwich") return;
    const view = this.currentView();
    const span = view.x1 - view.x0;
    const centre = view.x0 + span * fraction;
    const next = span / factor;
    this.setRange(centre - next * fraction, centre - next * fraction + next);
  }

  panBy(fraction) {
    const view = this.currentView();
    const shift = (view.x1 - view.x0) * fraction;
    this.setRange(view.x0 + shift, view.x1 + shift);
  }

  scrollBy(pixels) {
    const view = this.currentView();
    const canvas = this.chart;
    const rows = this.view === "flamegraph" ? (this.graphRows || []).length : this.chartDepth();
    const room = Math.max(0, rows * ROW_HEIGHT + AXIS_HEIGHT + ROW_HEIGHT - (canvas.cssHeight || 0));
    view.scrollTop = Math.min(Math.max(view.scrollTop + pixels, 0), room);
    if (this.remote && this.view === "flamechart") this.scheduleRemoteChart();
    this.requestDraw();
  }

  chartDepth() {
    return this.local ? this.local.maxDepth : this.info.max_depth;
  }

  reset() {
    if (this.view === "sandwich") return;
    const view = this.currentView();
    view.scrollTop = 0;
    const [lo, hi] = this.bounds();
    this.setRange(lo, hi);
  }

  onKey(event) {
    if (this.disposed || this.root.hidden) return;
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const actions = {
      "+": () => this.zoomBy(KEY_ZOOM),
      "=": () => this.zoomBy(KEY_ZOOM),
      "-": () => this.zoomBy(1 / KEY_ZOOM),
      _: () => this.zoomBy(1 / KEY_ZOOM),
      0: () => this.reset(),
      ArrowLeft: () => this.panBy(-PAN_FRACTION),
      ArrowRight: () => this.panBy(PAN_FRACTION),
      ArrowUp: () => this.scrollBy(-ROW_HEIGHT),
      ArrowDown: () => this.scrollBy(ROW_HEIGHT),
    };
    const action = actions[event.key];
    if (action && this.view !== "sandwich") {
      event.preventDefault();
      action();
    }
  }

  // --- pointer ---------------------------------------------------------------

  bindPointer(flame, viewOf, name, on) {
    const canvas = flame.canvas;
    let drag = null;
    const point = (event) => {
      const box = canvas.getBoundingClientRect();
      return [event.clientX - box.left, event.clientY - box.top];
    };
    on(canvas, "mousedown", (event) => {
      if (event.button !== 0) return;
      const [x, y] = point(event);
      const onAxis = name === "chart" && this.view === "flamechart" && y < AXIS_HEIGHT;
      drag = { x, y, moved: false, onAxis, view: viewOf ? { ...this.currentView() } : null };
      if (onAxis) drag.anchor = this.axisAt(x);
      event.preventDefault();
    });
    on(window, "mousemove", (event) => {
      const [x, y] = point(event);
      if (!drag) {
        if (event.target === canvas) this.hoverAt(flame, x, y, event);
        return;
      }
      if (Math.abs(x - drag.x) + Math.abs(y - drag.y) > 3) drag.moved = true;
      if (!drag.moved) return;
      if (drag.onAxis) {
        this.axisSelection = [drag.anchor, this.axisAt(x)];
        this.requestDraw();
      } else if (drag.view) {
        const scale = (drag.view.x1 - drag.view.x0) / flame.cssWidth;
        const shift = (drag.x - x) * scale;
        this.currentView().scrollTop = drag.view.scrollTop;
        this.setRange(drag.view.x0 + shift, drag.view.x1 + shift);
        this.scrollBy(drag.y - y + drag.view.scrollTop - this.currentView().scrollTop);
      }
      this.hideTooltip();
    });
    on(window, "mouseup", (event) => {
      if (!drag) return;
      const [x, y] = point(event);
      const finished = drag;
      drag = null;
      if (finished.onAxis && finished.moved) {
        const [a, b] = [finished.anchor, this.axisAt(x)].sort((p, q) => p - q);
        this.axisSelection = null;
        if (b > a) this.setRange(a, b);
      } else if (!finished.moved) {
        this.clickAt(flame, name, x, y);
      }
    });
    on(canvas, "mouseleave", () => {
      if (flame.hover) {
        flame.hover = null;
        this.requestDraw();
      }
      this.hideTooltip();
    });
    if (viewOf) {
      on(
        canvas,
        "wheel",
        (event) => {
          event.preventDefault();
          const [x] = point(event);
          if (Math.abs(event.deltaX) > Math.abs(event.deltaY)) {
            this.panBy(event.deltaX / flame.cssWidth);
          } else if (event.shiftKey) {
            this.scrollBy(event.deltaY);
          } else {
            const speed = event.ctrlKey ? 0.01 : 0.002; // pinch arrives as ctrl+wheel
            this.zoomBy(Math.exp(-event.deltaY * speed), x / flame.cssWidth);
          }
        },
        { passive: false },
      );
    }
  }

  axisAt(x) {
    const { x0, x1 } = this.chartView;
    return Math.min(Math.max(x0 + (x / this.chart.cssWidth) * (x1 - x0), this.start), this.end);
  }

  hoverAt(flame, x, y, event) {
    const hit = flame.hit(x, y);
    const same = hit && flame.hover && hit.row === flame.hover.row && hit.index === flame.hover.index;
    if (!same) {
      flame.hover = hit;
      this.requestDraw();
    }
    if (!hit) {
      this.hideTooltip();
      return;
    }
    const frame = flame.describe(hit);
    const whole = this.rangeTotal(flame);
    const tooltip = this.tooltip;
    tooltip.replaceChildren();
    const line = (cls, text) => {
      const div = document.createElement("div");
      div.className = cls;
      div.textContent = text;
      tooltip.append(div);
    };
    line("tip-name", frame.name);
    if (frame.location) line("tip-location", frame.location);
    line("tip-weight", `self ${formatValue(frame.self, this.unit)} (${formatPercent(frame.self, whole)})`);
    line("tip-weight", `total ${formatValue(frame.total, this.unit)} (${formatPercent(frame.total, whole)})`);
    tooltip.hidden = false;
    const pad = 14;
    const width = tooltip.offsetWidth;
    const height = tooltip.offsetHeight;
    const left = event.clientX + pad + width > window.innerWidth ? event.clientX - pad - width : event.clientX + pad;
    const top = event.clientY + pad + height > window.innerHeight ? event.clientY - pad - height : event.clientY + pad;
    tooltip.style.left = `${Math.max(0, left)}px`;
    tooltip.style.top = `${Math.max(0, top)}px`;
  }

  /** What a hovered frame's percentages are of. */
  rangeTotal(flame) {
    if (flame !== this.chart) return this.sandwichTotal || 1;
    if (this.view === "flamechart") return this.end - this.start; // a run may outlast the selection
    return this.graphAxisEnd || 1;
  }

  hideTooltip() {
    if (this.tooltip) this.tooltip.hidden = true;
  }

  clickAt(flame, name, x, y) {
    const hit = flame.hit(x, y);
    if (!hit) return;
    const frame = flame.describe(hit);
    if (name === "chart") {
      // Focus: zoom to the frame (on the flame chart this selects its time).
      this.setRange(frame.start, frame.end);
    } else if (frame.fn >= 0) {
      this.selectFunction(frame.fn);
    }
  }

  bindOverview(on) {
    const canvas = this.overviewCanvas;
    let dragging = false;
    const move = (event) => {
      const box = canvas.getBoundingClientRect();
      const fraction = (event.clientX - box.left) / box.width;
      const centre = this.start + fraction * (this.end - this.start);
      const span = this.chartView.x1 - this.chartView.x0;
      this.setRange(centre - span / 2, centre + span / 2, this.chartView, [this.start, this.end]);
      this.graphFor = null;
      if (this.view !== "flamechart") this.show(this.view);
    };
    on(canvas, "mousedown", (event) => {
      dragging = true;
      move(event);
      event.preventDefault();
    });
    on(window, "mousemove", (event) => dragging && move(event));
    on(window, "mouseup", () => {
      dragging = false;
    });
  }

  // --- search ----------------------------------------------------------------

  setSearch(text) {
    this.search = text.trim();
    const count = $(this.root, "#search-count");
    if (!this.functions) return;
    if (!this.search) {
      this.matches = null;
      count.textContent = "";
    } else {
      const { found, count: n } = this.functions.matches(this.search);
      this.matches = found;
      count.textContent = `${n} function${n === 1 ? "" : "s"}`;
    }
    this.matchesFor = this.functions.length;
    for (const flame of [this.chart, this.callers, this.callees]) flame.matches = this.matches;
    this.overviewDirty = true;
    if (this.view === "sandwich") this.renderTable();
    this.requestDraw();
  }

  refreshMatches() {
    // Server layouts add functions as they arrive: extend the matches to them.
    if (this.search && this.functions.length !== this.matchesFor) this.setSearch(this.search);
  }

  // --- layout mode (profiles too large to ship whole) -------------------------------

  scheduleRemoteChart() {
    clearTimeout(this.remoteTimer);
    this.remoteTimer = setTimeout(() => this.fetchRemoteChart(), LAYOUT_DELAY_MS);
  }

  fetchRemoteChart() {
    const { x0, x1, scrollTop } = this.chartView;
    const height = this.chart.cssHeight || 600;
    const startDepth = Math.floor(scrollTop / ROW_HEIGHT);
    const levels = Math.ceil(height / ROW_HEIGHT) + 1;
    const serial = ++this.layoutSerial;
    fetchLayout(this.data, this.profileIndex, {
      view: "flamechart",
      start: x0,
      end: x1,
      width: this.chartWidth(),
      start_depth: startDepth,
      levels,
    })
      .then((layout) => {
        if (serial !== this.layoutSerial || this.disposed) return;
        const { rows, firstDepth } = rowsOfLayout(layout, this.functions);
        this.remoteChart = { rows, firstDepth: rows.length ? firstDepth : startDepth };
        this.refreshMatches();
        this.requestDraw();
      })
      .catch((error) => this.showError(error));
  }

  fetchOverview() {
    const width = Math.max(16, Math.round(this.overviewCanvas.clientWidth || 1200));
    fetchLayout(this.data, this.profileIndex, { view: "flamechart", width, levels: Math.floor(OVERVIEW_HEIGHT / 2) })
      .then((layout) => {
        if (this.disposed) return;
        this.overview.setRows(rowsOfLayout(layout, this.functions).rows, this.functions);
        this.overviewDirty = true;
        this.requestDraw();
      })
      .catch((error) => this.showError(error));
  }

  showError(error) {
    const status = $(this.root, "#viewer-status");
    status.textContent = error.message;
    status.hidden = false;
  }

  // --- sandwich ----------------------------------------------------------------

  prepareTable() {
    if (this.tableFor === this.rangeKey()) return;
    this.tableFor = this.rangeKey();
    const [start, end] = this.selection;
    if (this.local) {
      const table = this.local.functionTable(start, end);
      this.table = { self: table.self, total: table.total, rangeTotal: table.rangeTotal, ids: null };
      this.renderTable();
      if (this.selectedFunction !== null) this.selectFunction(this.selectedFunction);
    } else {
      fetchTop(this.data, this.profileIndex, start, end)
        .then((top) => {
          const ids = top.functions.map((f) => this.functions.add(f.name, f.file, f.line ?? -1));
          const self = new Float64Array(this.functions.length);
          const total = new Float64Array(this.functions.length);
          top.functions.forEach((f, k) => {
            self[ids[k]] = f.self;
            total[ids[k]] = f.total;
          });
          this.table = { self, total, rangeTotal: top.total, ids };
          this.refreshMatches();
          this.renderTable();
        })
        .catch((error) => this.showError(error));
    }
  }

  renderTable() {
    if (!this.table) return;
    const { self, total, rangeTotal } = this.table;
    let ids = this.table.ids ? [...this.table.ids] : [];
    if (!this.table.ids) for (let fn = 0; fn < total.length; fn++) if (total[fn] > 0 || self[fn] > 0) ids.push(fn);
    if (this.matches) ids = ids.filter((fn) => this.matches[fn]);
    const key = this.sortKey === "self" ? self : total;
    const other = this.sortKey === "self" ? total : self;
    ids.sort((a, b) => key[b] - key[a] || other[b] - other[a]);
    for (const header of this.root.querySelectorAll("#sandwich-table th[data-sort]")) {
      header.setAttribute("aria-sort", header.dataset.sort === this.sortKey ? "descending" : "none");
    }
    const body = $(this.root, "#sandwich-table tbody");
    const shown = ids.slice(0, 2000);
    body.replaceChildren(
      ...shown.map((fn) => {
        const tr = document.createElement("tr");
        tr.dataset.fn = String(fn);
        if (fn === this.selectedFunction) tr.className = "selected";
        const cells = [
          formatValue(self[fn], this.unit),
          formatPercent(self[fn], rangeTotal),
          formatValue(total[fn], this.unit),
          formatPercent(total[fn], rangeTotal),
        ];
        for (const text of cells) {
          const td = document.createElement("td");
          td.className = "number";
          td.textContent = text;
          tr.append(td);
        }
        const name = document.createElement("td");
        name.className = "function";
        name.textContent = this.functions.names[fn];
        name.title = this.functions.location(fn);
        tr.append(name);
        return tr;
      }),
    );
  }

  selectFunction(fn) {
    this.selectedFunction = fn;
    if (this.view !== "sandwich") this.show("sandwich");
    for (const tr of this.root.querySelectorAll("#sandwich-table tbody tr")) {
      tr.classList.toggle("selected", Number(tr.dataset.fn) === fn);
    }
    $(this.root, "#sandwich-title").textContent = this.functions.names[fn];
    const [start, end] = this.selection;
    if (this.local) {
      const { callers, callees } = this.local.sandwich(fn, start, end);
      this.setSandwich(callers.rows, callees.rows, Math.max(callers.axisEnd, callees.axisEnd));
    } else {
      const file = this.functions.files[fn];
      const name = this.functions.names[fn];
      fetchLayout(this.data, this.profileIndex, {
        view: "sandwich",
        function: file ? `${name} (${file})` : name,
        start,
        end,
        width: this.chartWidth(),
      })
        .then((layout) => {
          const { rows, firstDepth } = rowsOfLayout(layout, this.functions);
          const middle = -firstDepth;
          this.refreshMatches();
          this.setSandwich(rows.slice(0, middle + 1).reverse(), rows.slice(middle), layout.axis_end);
        })
        .catch((error) => this.showError(error));
    }
  }

  setSandwich(callerRows, calleeRows, axisEnd) {
    this.callers.setRows(callerRows, this.functions);
    this.callees.setRows(calleeRows, this.functions);
    this.sandwichAxis = axisEnd;
    this.sandwichTotal = axisEnd;
    $(this.root, "#sandwich-flames").hidden = false;
    this.requestDraw(true);
  }

  // --- drawing -------------------------------------------------------------------

  retheme() {
    this.palette = themeColours();
    for (const flame of [this.chart, this.overview, this.callers, this.callees]) flame.recolour();
    this.overviewDirty = true;
    this.requestDraw(true);
  }

  requestDraw(resize = false) {
    this.needsResize = this.needsResize || resize;
    if (this.pending || this.disposed) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    if (this.disposed || !this.info) return;
    const began = performance.now();
    const area = $(this.root, "#view-area");
    const palette = this.palette;
    if (this.view !== "sandwich") {
      if (this.needsResize || !this.chart.cssWidth) {
        this.chart.resize(area.clientWidth, Math.max(area.clientHeight, 200));
      }
      if (this.view === "flamechart") {
        if (this.local) this.chart.setRows(this.local.chartRows, this.functions);
        else if (this.remoteChart) this.chart.setRows(this.remoteChart.rows, this.functions, this.remoteChart.firstDepth);
        else this.chart.setRows([], this.functions);
        this.chart.top = AXIS_HEIGHT;
        this.chart.draw(this.chartView, palette);
        this.drawAxis(palette);
      } else {
        this.chart.top = 0;
        this.chart.setRows(this.graphRows || [], this.functions);
        this.chart.draw(this.graphView, palette);
      }
    } else if (!$(this.root, "#sandwich-flames").hidden) {
      const flames = $(this.root, "#sandwich-flames");
      const width = flames.clientWidth;
      for (const flame of [this.callers, this.callees]) {
        flame.resize(width, Math.max(flame.rows.length, 1) * ROW_HEIGHT + 4);
        flame.draw({ x0: 0, x1: this.sandwichAxis || 1, scrollTop: 0 }, palette);
      }
    }
    this.drawOverview(palette);
    this.needsResize = false;
    this.rangeText.textContent = formatRange(this.chartView.x1 - this.chartView.x0, this.end - this.start, this.unit);
    const times = window.__flamesightFrameTimes;
    times.push(performance.now() - began);
    if (times.length > FRAME_TIMES_KEPT) times.splice(0, times.length - FRAME_TIMES_KEPT);
  }

  drawAxis(palette) {
    const ctx = this.chart.context;
    const width = this.chart.cssWidth;
    const { x0, x1 } = this.chartView;
    ctx.fillStyle = palette.background;
    ctx.fillRect(0, 0, width, AXIS_HEIGHT);
    const step = niceStep(x1 - x0, width, 90);
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.fillStyle = palette.axis;
    ctx.strokeStyle = palette.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let tick = Math.ceil(x0 / step) * step; tick < x1; tick += step) {
      const x = Math.round(((tick - x0) / (x1 - x0)) * width) + 0.5;
      ctx.moveTo(x, 0);
      ctx.lineTo(x, AXIS_HEIGHT);
      ctx.fillText(formatValue(Number((tick - this.start).toPrecision(12)), this.unit), x + 3, AXIS_HEIGHT / 2);
    }
    ctx.moveTo(0, AXIS_HEIGHT - 0.5);
    ctx.lineTo(width, AXIS_HEIGHT - 0.5);
    ctx.stroke();
    if (this.axisSelection) {
      const [a, b] = this.axisSelection;
      const left = ((Math.min(a, b) - x0) / (x1 - x0)) * width;
      const right = ((Math.max(a, b) - x0) / (x1 - x0)) * width;
      ctx.fillStyle = palette.selection;
      ctx.fillRect(left, 0, right - left, this.chart.cssHeight);
    }
  }

  drawOverview(palette) {
    const canvas = this.overviewCanvas;
    const width = canvas.clientWidth;
    const ratio = window.devicePixelRatio || 1;
    if (this.overviewDirty || this.overview.cssWidth !== width) {
      const depth = Math.max(this.overview.rows.length, 1);
      this.overview.rowHeight = Math.max(1, Math.min(4, OVERVIEW_HEIGHT / depth));
      this.overview.resize(width, OVERVIEW_HEIGHT);
      this.overview.draw({ x0: this.start, x1: this.end, scrollTop: 0 }, palette);
      this.overviewDirty = false;
    }
    if (canvas.width !== Math.round(width * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(OVERVIEW_HEIGHT * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(this.overview.canvas, 0, 0);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const full = this.end - this.start;
    const left = ((this.chartView.x0 - this.start) / full) * width;
    const right = ((this.chartView.x1 - this.start) / full) * width;
    ctx.fillStyle = palette.selection;
    ctx.fillRect(0, 0, left, OVERVIEW_HEIGHT);
    ctx.fillRect(right, 0, width - right, OVERVIEW_HEIGHT);
    ctx.strokeStyle = palette.outline;
    ctx.lineWidth = 1.5;
    ctx.strokeRect(left + 0.75, 0.75, Math.max(right - left - 1.5, 1), OVERVIEW_HEIGHT - 1.5);
  }
}
