// The profile model in the browser, precomputed once so that drawing a
// viewport is a binary search per row plus the rectangles that are visible.
//
// Frames are grouped into functions (same name and file), and the stack
// table is regrouped into a tree of function nodes, as flamesight.render's
// layouts do. Views are "rows": per depth, rectangles sorted by start
// (start, end, fn, self, total columns), in axis units.

class Growable {
  constructor(Type, capacity = 64) {
    this.Type = Type;
    this.data = new Type(capacity);
    this.length = 0;
  }
  push(value) {
    if (this.length === this.data.length) {
      const bigger = new this.Type(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = value;
    return this.length - 1;
  }
  finish() {
    return this.data.slice(0, this.length);
  }
}

/** Function names, files and lines, plus per-function colours and search matches. */
export class Functions {
  constructor(names, files, lines) {
    this.names = names;
    this.files = files;
    this.lines = lines;
    this.lowerNames = names.map((name) => name.toLowerCase());
  }
  get length() {
    return this.names.length;
  }
  location(fn) {
    if (fn < 0 || !this.files[fn]) return "";
    return this.lines[fn] >= 0 ? `${this.files[fn]}:${this.lines[fn]}` : this.files[fn];
  }
  /** Uint8Array: 1 for the functions whose name or file contains `text` (case-insensitive). */
  matches(text) {
    const found = new Uint8Array(this.names.length);
    const needle = text.toLowerCase();
    let count = 0;
    for (let i = 0; i < this.names.length; i++) {
      if (this.lowerNames[i].includes(needle) || (this.files[i] || "").toLowerCase().includes(needle)) {
        found[i] = 1;
        count++;
      }
    }
    return { found, count };
  }
}

/** Rows from per-depth growable columns. */
function finishRows(columns) {
  return columns.map((row) => ({
    start: row.start.finish(),
    end: row.end.finish(),
    fn: row.fn.finish(),
    self: row.self.finish(),
    total: row.total ? row.total.finish() : null,
    merged: null,
    length: row.start.length,
  }));
}

function rowColumns(withTotal) {
  return {
    start: new Growable(Float64Array),
    end: new Growable(Float64Array),
    fn: new Growable(Int32Array),
    self: new Growable(Float64Array),
    total: withTotal ? new Growable(Float64Array) : null,
  };
}

/** First index in the sorted `array[0:length]` whose value is > `value`. */
export function upperBound(array, value, lo = 0, hi = array.length) {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (array[mid] > value) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** First index whose value is >= `value`. */
export function lowerBound(array, value, lo = 0, hi = array.length) {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (array[mid] >= value) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** A profile shipped whole: samples, the function tree, the flame chart rows. */
export class LocalProfile {
  constructor(header, arrays) {
    const info = header.profile;
    this.info = info;
    this.unit = info.unit;
    this.start = info.start;
    this.end = info.end > info.start ? info.end : info.start + 1;
    this.time = arrays.sample_time;
    this.weight = arrays.sample_weight;
    this.sampleStack = arrays.sample_stack;
    this.buildFunctions(header.frames, arrays.frame_line);
    this.buildTree(arrays.stack_parent, arrays.stack_frame);
    this.longest = 0;
    for (let i = 0; i < this.weight.length; i++) if (this.weight[i] > this.longest) this.longest = this.weight[i];
    this.chartRows = this.buildChart();
  }

  buildFunctions(frames, frameLine) {
    const ids = new Map();
    const names = [];
    const files = [];
    const lines = [];
    this.fnOfFrame = new Int32Array(frames.names.length);
    for (let i = 0; i < frames.names.length; i++) {
      const key = `${frames.names[i]}\u0000${frames.files[i] ?? ""}`;
      let fn = ids.get(key);
      if (fn === undefined) {
        fn = names.length;
        ids.set(key, fn);
        names.push(frames.names[i]);
        files.push(frames.files[i]);
        lines.push(-1);
      }
      const line = frameLine[i];
      if (line >= 0 && (lines[fn] < 0 || line < lines[fn])) lines[fn] = line;
      this.fnOfFrame[i] = fn;
    }
    this.functions = new Functions(names, files, lines);
  }

  /** Regroup the stack table by function: nodes are created parents first. */
  buildTree(stackParent, stackFrame) {
    const count = stackParent.length;
    const nodeOfStack = new Int32Array(count).fill(-1);
    const parent = new Growable(Int32Array);
    const fnOfNode = new Growable(Int32Array);
    const depth = new Growable(Int32Array);
    const byKey = new Map();
    const pending = [];
    for (let s = 0; s < count; s++) {
      if (nodeOfStack[s] >= 0) continue;
      let walk = s;
      while (walk >= 0 && nodeOfStack[walk] < 0) {
        pending.push(walk);
        walk = stackParent[walk];
      }
      while (pending.length) {
        const stack = pending.pop();
        const up = stackParent[stack] >= 0 ? nodeOfStack[stackParent[stack]] : -1;
        const fn = this.fnOfFrame[stackFrame[stack]];
        const key = up * 1048576 * 64 + fn; // exact below 2^53
        let node = byKey.get(key);
        if (node === undefined) {
          node = parent.push(up);
          fnOfNode.push(fn);
          depth.push(up >= 0 ? depth.data[up] + 1 : 0);
          byKey.set(key, node);
        }
        nodeOfStack[stack] = node;
      }
    }
    this.nodeOfStack = nodeOfStack;
    this.parent = parent.finish();
    this.fnOfNode = fnOfNode.finish();
    this.depth = depth.finish();
    const nodes = this.parent.length;
    let maxDepth = 0;
    for (let n = 0; n < nodes; n++) if (this.depth[n] + 1 > maxDepth) maxDepth = this.depth[n] + 1;
    this.maxDepth = maxDepth;
    // Children lists (CSR), and whether a node is the outermost call of its function.
    const childCount = new Int32Array(nodes + 1);
    for (let n = 0; n < nodes; n++) if (this.parent[n] >= 0) childCount[this.parent[n] + 1]++;
    for (let n = 0; n < nodes; n++) childCount[n + 1] += childCount[n];
    this.childStart = childCount;
    this.children = new Int32Array(nodes);
    const fill = childCount.slice(0, nodes);
    this.roots = [];
    for (let n = 0; n < nodes; n++) {
      if (this.parent[n] >= 0) this.children[fill[this.parent[n]]++] = n;
      else this.roots.push(n);
    }
    this.outermost = new Uint8Array(nodes);
    for (let n = 0; n < nodes; n++) {
      let up = this.parent[n];
      while (up >= 0 && this.fnOfNode[up] !== this.fnOfNode[n]) up = this.parent[up];
      this.outermost[n] = up < 0 ? 1 : 0;
    }
  }

  /** The time-order rows: per depth, runs of consecutive samples under one node. */
  buildChart() {
    const rows = [];
    for (let d = 0; d < this.maxDepth; d++) rows.push(rowColumns(false));
    const path = new Int32Array(this.maxDepth).fill(-1); // open node per depth
    const open = new Int32Array(this.maxDepth).fill(-1); // open run index per depth
    let openDepth = 0;
    let lastEnd = -Infinity;
    let previous = -1;
    const scratch = new Int32Array(this.maxDepth);
    const close = (from) => {
      for (let d = from; d < openDepth; d++) rows[d].end.data[open[d]] = lastEnd;
      openDepth = Math.min(openDepth, from);
    };
    const { time, weight, sampleStack, nodeOfStack, depth, parent, fnOfNode } = this;
    for (let i = 0; i < time.length; i++) {
      const stack = sampleStack[i];
      const node = stack >= 0 ? nodeOfStack[stack] : -1;
      const t0 = time[i];
      const w = weight[i];
      if (t0 > lastEnd) {
        close(0); // a gap ends every run
        previous = -1;
      }
      if (node !== previous) {
        if (node < 0) {
          close(0);
        } else {
          const newDepth = depth[node] + 1;
          for (let d = newDepth - 1, n = node; d >= 0; d--, n = parent[n]) scratch[d] = n;
          let common = 0;
          const limit = Math.min(openDepth, newDepth);
          while (common < limit && path[common] === scratch[common]) common++;
          close(common);
          for (let d = common; d < newDepth; d++) {
            path[d] = scratch[d];
            const row = rows[d];
            open[d] = row.start.push(t0);
            row.end.push(t0);
            row.fn.push(fnOfNode[scratch[d]]);
            row.self.push(0);
          }
          openDepth = newDepth;
        }
        previous = node;
      }
      if (node >= 0) rows[openDepth - 1].self.data[open[openDepth - 1]] += w;
      lastEnd = Math.max(lastEnd, t0 + w);
    }
    close(0);
    return finishRows(rows);
  }

  /** Leaf and subtree weight of every node over [start, end) (straddling samples clipped). */
  weights(start, end) {
    const nodes = this.parent.length;
    const leaf = new Float64Array(nodes);
    const { time, weight, sampleStack, nodeOfStack } = this;
    const lo = lowerBound(time, start - this.longest);
    const hi = lowerBound(time, end);
    for (let i = lo; i < hi; i++) {
      const stack = sampleStack[i];
      if (stack < 0) continue;
      const t0 = time[i];
      const overlap = Math.min(t0 + weight[i], end) - Math.max(t0, start);
      if (overlap > 0) leaf[nodeOfStack[stack]] += overlap;
    }
    const subtree = leaf.slice();
    for (let n = nodes - 1; n >= 0; n--) if (this.parent[n] >= 0) subtree[this.parent[n]] += subtree[n];
    return { leaf, subtree };
  }

  /** Self and total weight per function over a range; total counts recursion once. */
  functionTable(start, end) {
    const { leaf, subtree } = this.weights(start, end);
    const fns = this.functions.length;
    const self = new Float64Array(fns);
    const total = new Float64Array(fns);
    for (let n = 0; n < leaf.length; n++) {
      self[this.fnOfNode[n]] += leaf[n];
      if (this.outermost[n]) total[this.fnOfNode[n]] += subtree[n];
    }
    let rangeTotal = 0;
    for (const root of this.roots) rangeTotal += subtree[root];
    return { self, total, rangeTotal, leaf, subtree };
  }

  /** The left-heavy flame graph of [start, end) as rows on the axis 0..busy weight. */
  flameGraph(start, end) {
    const { leaf, subtree } = this.weights(start, end);
    const tree = {
      roots: this.roots,
      children: (n) => this.children.subarray(this.childStart[n], this.childStart[n + 1]),
      fn: this.fnOfNode,
      leaf,
      subtree,
    };
    return leftHeavy(tree, this.functions);
  }

  /** The sandwich of function `fn` over [start, end): caller rows (inverted) and callee rows. */
  sandwich(fn, start, end) {
    const { leaf, subtree } = this.weights(start, end);
    const anchors = [];
    for (let n = 0; n < leaf.length; n++) if (this.fnOfNode[n] === fn && this.outermost[n] && subtree[n] > 0) anchors.push(n);
    // Callees: the anchors' subtrees merged by path under one root.
    const callees = new PathTree(fn);
    for (const anchor of anchors) {
      callees.total[0] += subtree[anchor];
      callees.self[0] += leaf[anchor];
      const stack = [[anchor, 0]];
      while (stack.length) {
        const [node, into] = stack.pop();
        for (let c = this.childStart[node]; c < this.childStart[node + 1]; c++) {
          const child = this.children[c];
          if (subtree[child] <= 0) continue;
          const merged = callees.child(into, this.fnOfNode[child]);
          callees.total[merged] += subtree[child];
          callees.self[merged] += leaf[child];
          stack.push([child, merged]);
        }
      }
    }
    // Callers: each anchor's ancestors, nearest first, carrying the anchor's weight.
    const callers = new PathTree(fn);
    for (const anchor of anchors) {
      const w = subtree[anchor];
      callers.total[0] += w;
      let into = 0;
      let up = this.parent[anchor];
      if (up < 0) callers.self[0] += w;
      while (up >= 0) {
        into = callers.child(into, this.fnOfNode[up]);
        callers.total[into] += w;
        if (this.parent[up] < 0) callers.self[into] += w;
        up = this.parent[up];
      }
    }
    return { callers: leftHeavy(callers.asTree(), this.functions), callees: leftHeavy(callees.asTree(), this.functions) };
  }
}

/** A tree merged by path, grown node by node (node 0 is the root). */
class PathTree {
  constructor(rootFn) {
    this.fn = [rootFn];
    this.kids = [new Map()];
    this.total = [0];
    this.self = [0];
  }
  child(node, fn) {
    let found = this.kids[node].get(fn);
    if (found === undefined) {
      found = this.fn.length;
      this.fn.push(fn);
      this.kids.push(new Map());
      this.total.push(0);
      this.self.push(0);
      this.kids[node].set(fn, found);
    }
    return found;
  }
  asTree() {
    return {
      roots: [0],
      children: (n) => [...this.kids[n].values()],
      fn: this.fn,
      leaf: this.self,
      subtree: this.total,
    };
  }
}

/** Left-heavy placement: children by total weight, heaviest first, ties by name. */
function leftHeavy(tree, functions) {
  const rows = [];
  const names = functions.names;
  const order = (nodes) =>
    [...nodes]
      .filter((n) => tree.subtree[n] > 0)
      .sort((a, b) => tree.subtree[b] - tree.subtree[a] || (names[tree.fn[a]] < names[tree.fn[b]] ? -1 : 1));
  let level = order(tree.roots).map((n) => [n, 0]);
  let axisEnd = 0;
  for (const [n] of level) axisEnd += tree.subtree[n];
  let x = 0;
  for (const entry of level) {
    entry[1] = x;
    x += tree.subtree[entry[0]];
  }
  while (level.length) {
    const row = rowColumns(true);
    const next = [];
    for (const [node, left] of level) {
      row.start.push(left);
      row.end.push(left + tree.subtree[node]);
      row.fn.push(tree.fn[node]);
      row.self.push(tree.leaf[node]);
      row.total.push(tree.subtree[node]);
      let childX = left;
      for (const child of order(tree.children(node))) {
        next.push([child, childX]);
        childX += tree.subtree[child];
      }
    }
    rows.push(row);
    level = next;
  }
  return { rows: finishRows(rows), axisEnd: axisEnd > 0 ? axisEnd : 1 };
}

/** Rows from a server layout (flamesight.server.viewer_routes `/layout`). */
export function rowsOfLayout(layout, functions) {
  const byDepth = new Map();
  const fnIndex = new Map();
  for (let i = 0; i < layout.x.length; i++) {
    const depth = layout.depth[i];
    if (!byDepth.has(depth)) byDepth.set(depth, rowColumns(true));
    const row = byDepth.get(depth);
    let fn = layout.function[i];
    if (fn >= 0) {
      let local = fnIndex.get(fn);
      if (local === undefined) {
        const described = layout.functions[String(fn)];
        local = functions.add(described.name, described.file, described.line);
        fnIndex.set(fn, local);
      }
      fn = local;
    }
    row.start.push(layout.x[i]);
    row.end.push(layout.x[i] + layout.span[i]);
    row.fn.push(fn);
    row.self.push(layout.self[i]);
    row.total.push(layout.total[i]);
  }
  const depths = [...byDepth.keys()];
  const lowest = depths.length ? Math.min(...depths) : 0;
  const highest = depths.length ? Math.max(...depths) : -1;
  const columns = [];
  for (let d = lowest; d <= highest; d++) columns.push(byDepth.get(d) || rowColumns(true));
  return { rows: finishRows(columns), firstDepth: lowest };
}

/** A function table that grows as server layouts name more functions. */
export class GrowingFunctions extends Functions {
  constructor() {
    super([], [], []);
    this.ids = new Map();
  }
  add(name, file, line) {
    const key = `${name}\u0000${file ?? ""}`;
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.names.length;
      this.ids.set(key, id);
      this.names.push(name);
      this.files.push(file);
      this.lines.push(line);
      this.lowerNames.push(name.toLowerCase());
    }
    return id;
  }
}
