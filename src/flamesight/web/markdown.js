// A small Markdown renderer for model answers that is safe by construction:
// it builds DOM nodes and sets only text (textContent) and a checked `href`,
// so no HTML in the input is ever interpreted (it shows as text). It knows
// what models write: headings, paragraphs, emphasis, inline code, fenced
// code, lists (nested by indentation), block quotes, tables, rules, links
// (http, https and mailto only; images become links).

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^\s{0,3}>\s?/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_RULE = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;
const SAFE_URL = /^(https?:|mailto:)/i;

function element(tag, children = [], text = null) {
  const node = document.createElement(tag);
  if (text !== null) node.textContent = text;
  for (const child of children) node.append(child);
  return node;
}

// --- inline ------------------------------------------------------------------

const INLINE = [
  { name: "code", pattern: /(`+)([\s\S]*?[^`])\1(?!`)/ },
  { name: "image", pattern: /!\[([^\]]*)\]\(\s*<?([^\s)>]+)>?(?:\s+"[^"]*")?\s*\)/ },
  { name: "link", pattern: /\[((?:[^\[\]]|\[[^\]]*\])+)\]\(\s*<?([^\s)>]+)>?(?:\s+"[^"]*")?\s*\)/ },
  { name: "autolink", pattern: /<((?:https?:\/\/|mailto:)[^\s>]+)>|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/ },
  { name: "strong", pattern: /\*\*(?=\S)([\s\S]*?\S)\*\*|__(?=\S)([\s\S]*?\S)__(?!\w)/ },
  { name: "strike", pattern: /~~(?=\S)([\s\S]*?\S)~~/ },
  { name: "em", pattern: /\*(?=[^\s*])([\s\S]*?[^\s*])\*(?!\*)|(?<!\w)_(?=[^\s_])([\s\S]*?[^\s_])_(?!\w)/ },
  { name: "break", pattern: / {2,}\n|\\\n/ },
];

function link(text, url) {
  if (!SAFE_URL.test(url)) return [document.createTextNode(text)];
  const anchor = element("a", [], text);
  anchor.href = url;
  anchor.target = "_blank";
  anchor.rel = "noopener noreferrer";
  return [anchor];
}

/** Inline Markdown of `text` as an array of DOM nodes. */
export function renderInline(text) {
  const nodes = [];
  let rest = text;
  while (rest) {
    let best = null;
    for (const rule of INLINE) {
      const match = rule.pattern.exec(rest);
      if (match && (best === null || match.index < best.match.index)) best = { rule, match };
    }
    if (best === null) {
      nodes.push(document.createTextNode(rest));
      break;
    }
    const { rule, match } = best;
    if (match.index > 0) nodes.push(document.createTextNode(rest.slice(0, match.index)));
    rest = rest.slice(match.index + match[0].length);
    switch (rule.name) {
      case "code":
        nodes.push(element("code", [], match[2].replace(/^ (.*) $/, "$1")));
        break;
      case "image":
        nodes.push(...link(match[1] || match[2], match[2]));
        break;
      case "link": {
        const url = match[2];
        if (SAFE_URL.test(url)) {
          const anchor = element("a", renderInline(match[1]));
          anchor.href = url;
          anchor.target = "_blank";
          anchor.rel = "noopener noreferrer";
          nodes.push(anchor);
        } else {
          nodes.push(...renderInline(match[1]));
        }
        break;
      }
      case "autolink": {
        const url = match[1] || match[2];
        nodes.push(...link(url, url));
        break;
      }
      case "strong":
        nodes.push(element("strong", renderInline(match[1] ?? match[2])));
        break;
      case "strike":
        nodes.push(element("del", renderInline(match[1])));
        break;
      case "em":
        nodes.push(element("em", renderInline(match[1] ?? match[2])));
        break;
      case "break":
        nodes.push(element("br"));
        break;
      default:
        nodes.push(document.createTextNode(match[0]));
    }
  }
  return nodes;
}

// --- blocks ------------------------------------------------------------------

function indentOf(line) {
  return line.match(/^\s*/)[0].replace(/\t/g, "    ").length;
}

function dedent(line, count) {
  let removed = 0;
  let index = 0;
  while (index < line.length && removed < count && (line[index] === " " || line[index] === "\t")) {
    removed += line[index] === "\t" ? 4 : 1;
    index++;
  }
  return line.slice(index);
}

function cells(line) {
  let text = line.trim();
  if (text.startsWith("|")) text = text.slice(1);
  if (text.endsWith("|") && !text.endsWith("\\|")) text = text.slice(0, -1);
  return text.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

function startsBlock(line, next) {
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    ITEM.test(line) ||
    (line.includes("|") && next !== undefined && TABLE_RULE.test(next) && next.includes("-"))
  );
}

function table(lines, start) {
  const header = cells(lines[start]);
  const aligns = cells(lines[start + 1]).map((cell) => {
    if (cell.startsWith(":") && cell.endsWith(":")) return "center";
    if (cell.endsWith(":")) return "right";
    return cell.startsWith(":") ? "left" : "";
  });
  const row = (values, tag) =>
    element(
      "tr",
      header.map((_, column) => {
        const cell = element(tag, renderInline(values[column] ?? ""));
        if (aligns[column]) cell.style.textAlign = aligns[column];
        return cell;
      }),
    );
  let end = start + 2;
  const body = [];
  while (end < lines.length && lines[end].trim() && lines[end].includes("|")) {
    body.push(row(cells(lines[end]), "td"));
    end++;
  }
  const node = element("table", [element("thead", [row(header, "th")]), element("tbody", body)]);
  return { node: element("div", [node]), end, wrap: true };
}

function list(lines, start) {
  const first = lines[start].match(ITEM);
  const base = indentOf(lines[start]);
  const ordered = /\d/.test(first[2]);
  const node = element(ordered ? "ol" : "ul");
  if (ordered && parseInt(first[2], 10) !== 1) node.start = parseInt(first[2], 10);
  let index = start;
  let loose = false;
  const items = [];
  while (index < lines.length) {
    const match = lines[index].match(ITEM);
    if (!match || indentOf(lines[index]) > base + 1 || /\d/.test(match[2]) !== ordered) break;
    const contentIndent = match[1].length + match[2].length + 1;
    const body = [match[3]];
    index++;
    while (index < lines.length) {
      const line = lines[index];
      if (!line.trim()) {
        const next = lines[index + 1];
        if (next !== undefined && next.trim() && indentOf(next) >= contentIndent) {
          body.push("");
          loose = true;
          index++;
          continue;
        }
        if (next !== undefined && ITEM.test(next) && indentOf(next) <= base + 1) loose = true;
        break;
      }
      if (indentOf(line) >= Math.min(contentIndent, base + 2)) {
        body.push(dedent(line, contentIndent));
      } else if (!startsBlock(line, lines[index + 1])) {
        body.push(line.trim()); // a lazy continuation of the item's paragraph
      } else {
        break;
      }
      index++;
    }
    items.push(body);
    while (index < lines.length && !lines[index].trim()) {
      const next = lines[index + 1];
      if (next !== undefined && ITEM.test(next) && indentOf(next) <= base + 1) index++;
      else break;
    }
  }
  for (const body of items) {
    const blocks = renderBlocks(body);
    const li = element("li");
    if (!loose && blocks.length && blocks[0].tagName === "P") {
      li.append(...blocks[0].childNodes, ...blocks.slice(1));
    } else {
      li.append(...blocks);
    }
    node.append(li);
  }
  return { node, end: index };
}

function renderBlocks(lines) {
  const out = [];
  let index = 0;
  while (index < lines.length) {
    const line = lines[index];
    if (!line.trim()) {
      index++;
      continue;
    }
    const fence = line.match(FENCE);
    if (fence) {
      const marker = fence[1];
      const code = [];
      index++;
      while (index < lines.length && !lines[index].trim().startsWith(marker)) code.push(lines[index++]);
      index++;
      const inner = element("code", [], code.join("\n"));
      if (fence[2]) inner.className = `language-${fence[2]}`;
      out.push(element("pre", [inner]));
      continue;
    }
    const heading = line.match(HEADING);
    if (heading) {
      out.push(element(`h${heading[1].length}`, renderInline(heading[2])));
      index++;
      continue;
    }
    if (RULE.test(line)) {
      out.push(element("hr"));
      index++;
      continue;
    }
    if (QUOTE.test(line)) {
      const quoted = [];
      while (index < lines.length && lines[index].trim() && QUOTE.test(lines[index])) {
        quoted.push(lines[index++].replace(QUOTE, ""));
      }
      out.push(element("blockquote", renderBlocks(quoted)));
      continue;
    }
    if (line.includes("|") && index + 1 < lines.length && TABLE_RULE.test(lines[index + 1]) && lines[index + 1].includes("-")) {
      const { node, end } = table(lines, index);
      node.className = "md-table";
      out.push(node);
      index = end;
      continue;
    }
    if (ITEM.test(line)) {
      const { node, end } = list(lines, index);
      out.push(node);
      index = end;
      continue;
    }
    const paragraph = [line.trim()];
    index++;
    while (index < lines.length && lines[index].trim() && !startsBlock(lines[index], lines[index + 1])) {
      paragraph.push(lines[index].replace(/^\s+/, ""));
      index++;
    }
    out.push(element("p", renderInline(paragraph.join("\n"))));
  }
  return out;
}

/** Render Markdown `text` into `container` (its old children are replaced). */
export function renderMarkdown(container, text) {
  const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  container.replaceChildren(...renderBlocks(lines));
  return container;
}
