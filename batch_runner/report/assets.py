"""The CSS and JavaScript inlined into report.html (the page must work with no network at all)."""

from __future__ import annotations

CSS = """
:root {
  color-scheme: dark;
  --bg: #101214; --panel: #181b1f; --panel2: #1f2328; --line: #2b3036;
  --text: #e6e8eb; --muted: #98a1ab; --accent: #7aa9ff;
  --ok: #3fb27f; --bad: #e5534b; --warn: #d29922; --idle: #768390;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    sans-serif;
}
a { color: var(--accent); }
header.top {
  padding: 16px 28px 12px; background: var(--panel); border-bottom: 1px solid var(--line);
}
h1 { margin: 0 0 8px; font-size: 21px; font-weight: 600; letter-spacing: .2px; }
h2 { margin: 0 0 4px; font-size: 17px; font-weight: 600; }
.muted { color: var(--muted); font-weight: 400; }
.stats { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
.totals { margin-left: 8px; color: var(--muted); }
.badge {
  display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px;
  background: var(--panel2); border: 1px solid var(--line); color: var(--text);
}
.badge b { font-weight: 600; margin-left: 4px; }
.badge.m-keep { border-color: var(--ok); font-weight: 600; }
.badge.m-reject { border-color: var(--bad); text-decoration: line-through; }
.s-done { --st: var(--ok); } .s-failed { --st: var(--bad); } .s-uncertain { --st: var(--warn); }
.s-cancelled { --st: var(--idle); }
.s-pending, .s-submitting, .s-queued, .s-running, .s-downloading { --st: var(--accent); }
.badge[class*="s-"] { border-color: var(--st); }
.badge[class*="s-"]::before {
  content: ""; display: inline-block; width: 7px; height: 7px; border-radius: 50%;
  background: var(--st); margin-right: 6px; vertical-align: 1px;
}
nav.toc { margin-top: 8px; display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: 13px; }
nav.toc a { text-decoration: none; }
main { padding: 8px 28px 40px; }
section { margin: 18px 0 30px; }
.sub { margin: 2px 0 12px; color: var(--muted); font-size: 13px; }
.controls { display: flex; flex-wrap: wrap; gap: 10px 18px; margin: 10px 0 12px; }
.controls label { color: var(--muted); font-size: 13px; }
.controls label[hidden] { display: none; }
select {
  margin-left: 6px; background: var(--panel2); color: var(--text); border: 1px solid var(--line);
  border-radius: 6px; padding: 3px 8px; font: inherit;
}
.cards {
  display: grid; gap: 14px; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr));
}
.card {
  background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
  overflow: hidden; display: flex; flex-direction: column;
  content-visibility: auto; contain-intrinsic-size: auto 430px;
}
.media { display: grid; gap: 2px; grid-template-columns: repeat(var(--n, 1), 1fr); }
.thumb, .ph {
  display: flex; align-items: center; justify-content: center; aspect-ratio: 1 / 1;
  background: #0b0c0e; overflow: hidden;
}
.thumb img, .thumb video { width: 100%; height: 100%; object-fit: contain; display: block; }
.thumb:hover img { opacity: .92; }
.thumb.audio { flex-direction: column; gap: 8px; padding: 8px; }
.thumb.audio audio { width: 100%; }
.thumb.audio a { font-size: 12px; color: var(--muted); word-break: break-all; }
/* model ids wrap after '/' (html.breakable) or '-', never mid-word (a too-long word last) */
.model { margin: 0; font-size: 12px; color: var(--muted); overflow-wrap: break-word; }
.thumb.file { font-size: 12px; padding: 8px; word-break: break-all; text-decoration: none; }
.ph {
  flex-direction: column; gap: 6px; padding: 14px; text-align: center;
  background: repeating-linear-gradient(45deg, #15171a 0 10px, #181b1f 10px 20px);
  border-bottom: 2px solid var(--st, var(--line));
}
.ph b { text-transform: uppercase; letter-spacing: 1px; font-size: 12px; color: var(--st); }
.ph span { font-size: 12px; color: var(--muted); max-height: 7.5em; overflow: auto; }
.body { padding: 10px 12px 12px; display: flex; flex-direction: column; gap: 6px; }
.line1 { display: flex; align-items: center; gap: 8px; }
.idx { font-variant-numeric: tabular-nums; color: var(--muted); font-size: 12px; }
.prompt { margin: 0; max-height: 6.2em; overflow: auto; white-space: pre-wrap; }
.inputs { display: flex; gap: 4px; align-items: center; flex-wrap: wrap; color: var(--muted); }
.inputs img { width: 48px; height: 48px; object-fit: cover; border-radius: 3px; }
.reason { margin: 0; color: var(--bad); font-size: 12.5px; white-space: pre-wrap; }
dl.kv {
  margin: 0; display: grid; grid-template-columns: max-content 1fr; gap: 1px 10px;
  font-size: 12px;
}
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; overflow-wrap: anywhere; }
.foot { color: var(--muted); font-size: 11px; font-family: ui-monospace, monospace; }
.grid-wrap {
  overflow-x: auto; max-width: 100%; width: max-content;
  border: 1px solid var(--line); border-radius: 10px;
}
table.grid { border-collapse: collapse; }
table.grid th, table.grid td { border: 1px solid var(--line); padding: 8px; vertical-align: top; }
table.grid tr:first-child th { border-top: 0; }
table.grid th { background: var(--panel); font-weight: 600; font-size: 13px; }
th.corner { color: var(--muted); font-weight: 400; text-align: left; white-space: nowrap; }
table.grid th.row-head { text-align: right; vertical-align: middle; max-width: 220px; }
td.cell { min-width: 160px; text-align: center; }
td.cell:empty::after { content: "\\2014"; color: var(--muted); }
.item {
  display: inline-flex; flex-direction: column; width: 150px; margin: 2px; gap: 3px;
  vertical-align: top;
}
.cap { font-size: 11px; color: var(--muted); text-align: center; }
details.jobs { margin-top: 10px; }
details.jobs summary { cursor: pointer; color: var(--muted); font-size: 13px; }
table.list { border-collapse: collapse; margin-top: 8px; font-size: 12px; width: 100%; }
table.list th, table.list td {
  border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top;
}
table.list th { color: var(--muted); font-weight: 500; }
/* a pipeline's chains (report/chains.py): a card, its children's chains in a column beside */
.chains > .chain, .chains > details > .chain {
  padding: 12px 0; border-bottom: 1px solid var(--line); width: max-content; min-width: 100%;
}
.chain { display: flex; gap: 14px; align-items: flex-start; }
.chain > .card { flex: 0 0 250px; width: 250px; }
.kids {
  display: flex; flex-direction: column; gap: 14px; padding-left: 14px;
  border-left: 2px solid var(--line);
}
.stage {
  font-size: 11px; color: var(--muted); border: 1px solid var(--line); border-radius: 4px;
  padding: 0 5px;
}
details.page { margin-top: 8px; }
details.page summary { cursor: pointer; color: var(--muted); font-size: 13px; }
table.rows td.thumbs { white-space: nowrap; }
table.rows .thumb {
  display: inline-block; width: 48px; height: 48px; aspect-ratio: auto; margin-right: 4px;
}
"""

# Re-renders a sweep grid from its embedded JSON when an axis or filter select changes.
# Everything user-supplied is set through textContent / setAttribute, never innerHTML.
JS = """
(() => {
  "use strict";
  const SIZE = 140;
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v; else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const k of kids) if (k) e.append(k);
    return e;
  }
  function breakable(text) {  // text that may wrap after each "/", as html.breakable
    const out = document.createDocumentFragment();
    String(text).split("/").forEach((part, i, all) => {
      out.append(part);
      if (i < all.length - 1) out.append("/", document.createElement("wbr"));
    });
    return out;
  }
  function media(f, alt) {
    if (f.kind === "img") {
      return h("a", {class: "thumb", href: f.src, target: "_blank", rel: "noopener"},
        h("img", {src: f.th || f.src, loading: "lazy", decoding: "async", width: SIZE,
          height: SIZE, alt}));
    }
    if (f.kind === "video") {
      return h("div", {class: "thumb"}, h("video", {src: f.src, preload: "metadata",
        controls: true, muted: true, width: SIZE, height: SIZE}));
    }
    if (f.kind === "audio") {
      return h("div", {class: "thumb audio"},
        h("audio", {src: f.src, preload: "metadata", controls: true}),
        h("a", {href: f.src, target: "_blank", rel: "noopener", text: f.name}));
    }
    return h("a", {class: "thumb file", href: f.src, target: "_blank", rel: "noopener",
      text: f.name});
  }
  function item(job, data, stack) {
    const box = h("div", {class: "item s-" + job.s, title: job.t});
    if (job.f.length) for (const f of job.f) box.append(media(f, job.i));
    else box.append(h("div", {class: "ph"}, h("b", {text: job.s}),
      job.r ? h("span", {text: job.r}) : null));
    const cap = [job.i].concat(stack.map(k => data.fields[k].values[job.v[k]]));
    box.append(h("div", {class: "cap", text: cap.join(" \\u00b7 ")}));
    return box;
  }
  function render(root, data, st) {
    const r = st.row, c = st.col, fields = data.fields;
    const free = k => k !== r && k !== c && st.filter[k] === "";
    const stack = fields.map((_, k) => k).filter(free);
    const keep = j => fields.every((_, k) =>
      k === r || k === c || st.filter[k] === "" || j.v[k] === Number(st.filter[k]));
    const buckets = new Map();
    for (const j of data.jobs.filter(keep)) {
      const key = j.v[r] + "," + j.v[c];
      if (!buckets.has(key)) buckets.set(key, []);
      buckets.get(key).push(j);
    }
    const head = h("tr", null, h("th", {class: "corner",
      text: fields[r].label + " \\u2193  " + fields[c].label + " \\u2192"}));
    for (const v of fields[c].values) {
      head.append(h("th", {class: "col-head", scope: "col"}, breakable(v)));
    }
    const body = h("tbody");
    fields[r].values.forEach((rv, ri) => {
      const tr = h("tr", null, h("th", {class: "row-head", scope: "row"}, breakable(rv)));
      fields[c].values.forEach((_, ci) => {
        const td = h("td", {class: "cell"});
        for (const j of buckets.get(ri + "," + ci) || []) td.append(item(j, data, stack));
        tr.append(td);
      });
      body.append(tr);
    });
    const table = h("table", {class: "grid", "data-sweep": data.sweep},
      h("thead", null, head), body);
    root.querySelector("table.grid").replaceWith(table);
    for (const lab of root.querySelectorAll("label.filter")) {
      const k = Number(lab.dataset.field);
      lab.hidden = k === r || k === c;
    }
  }
  function setup(root) {
    const data = JSON.parse(root.querySelector("script.sweep-data").textContent);
    const rowSel = root.querySelector("select.axis-row");
    const colSel = root.querySelector("select.axis-col");
    const st = {row: data.row, col: data.col, filter: data.fields.map(() => "")};
    const filters = root.querySelectorAll("select.filter");
    rowSel.addEventListener("change", () => {
      const v = Number(rowSel.value);
      if (v === st.col) { st.col = st.row; colSel.value = String(st.col); }
      st.row = v; render(root, data, st);
    });
    colSel.addEventListener("change", () => {
      const v = Number(colSel.value);
      if (v === st.row) { st.row = st.col; rowSel.value = String(st.row); }
      st.col = v; render(root, data, st);
    });
    for (const sel of filters) {
      sel.addEventListener("change", () => {
        st.filter[Number(sel.dataset.field)] = sel.value; render(root, data, st);
      });
    }
    // A browser may restore select values on reload; redraw only then.
    const restored = Number(rowSel.value) !== st.row || Number(colSel.value) !== st.col ||
      [...filters].some(s => s.value !== "");
    if (restored) {
      st.row = Number(rowSel.value); st.col = Number(colSel.value);
      if (st.row === st.col) { st.col = data.col === st.row ? data.row : data.col; }
      colSel.value = String(st.col);
      for (const s of filters) st.filter[Number(s.dataset.field)] = s.value;
      render(root, data, st);
    }
  }
  for (const root of document.querySelectorAll("section.sweep[data-sweep]")) {
    if (root.querySelector("script.sweep-data")) setup(root);
  }
})();
"""
