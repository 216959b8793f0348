"""The one page of `serve`: a shell drawn from /api/status and /api/outputs, polled every
POLL_MS (no reload; cards are kept by job key and only moved or updated, so images already
loaded stay and the keyboard selection survives updates). Every text from the run is set as
text (never as HTML). No request leaves this server."""

from __future__ import annotations

POLL_MS = 2000

CSS = """
:root { --bg:#15171c; --panel:#1d2027; --line:#2e323c; --text:#e6e6e6; --muted:#9aa0ab;
  --ok:#4caf7a; --bad:#e0605e; --warn:#e0a84a; --accent:#5b9dff; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, sans-serif; background:var(--bg); color:var(--text); }
header { position:sticky; top:0; z-index:2; background:var(--panel);
  border-bottom:1px solid var(--line); padding:12px 24px; }
h1 { margin:0 0 6px; font-size:19px; font-weight:600; }
h2 { font-size:16px; margin:18px 0 8px; }
.row { display:flex; flex-wrap:wrap; gap:8px 14px; align-items:center; }
.badge { padding:1px 8px; border-radius:999px; border:1px solid var(--line); font-size:12px; }
.badge b { margin-left:4px; }
.s-done { border-color:var(--ok); } .s-failed { border-color:var(--bad); }
.s-uncertain { border-color:var(--warn); }
.live { color:var(--ok); } .idle { color:var(--muted); } .err { color:var(--bad); }
.muted { color:var(--muted); }
main { padding:6px 24px 40px; }
#grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(190px, 1fr)); gap:12px; }
.card { background:var(--panel); border:2px solid var(--line); border-radius:8px;
  overflow:hidden; display:flex; flex-direction:column; }
.card.sel { border-color:var(--accent); box-shadow:0 0 0 2px var(--accent); }
.card.m-keep { border-color:var(--ok); } .card.m-reject { opacity:.45; border-color:var(--bad); }
.card.sel.m-keep, .card.sel.m-reject { border-color:var(--accent); }
.media { display:flex; gap:2px; background:#0d0e11; min-height:120px; align-items:center; }
.media a { flex:1; display:block; }
.media img { width:100%; height:180px; object-fit:contain; display:block; }
.media video { width:100%; max-height:180px; } .media audio { width:100%; }
.body { padding:6px 8px 8px; font-size:12px; }
.prompt { margin:2px 0 6px; max-height:3.2em; overflow:hidden; }
.btns { display:flex; gap:6px; }
.btns button { flex:1; background:#262a33; color:var(--text); border:1px solid var(--line);
  border-radius:5px; padding:3px 0; cursor:pointer; font-size:12px; }
.btns button.on.keep { background:var(--ok); color:#000; }
.btns button.on.reject { background:var(--bad); color:#000; }
table { border-collapse:collapse; font-size:13px; }
td, th { border-bottom:1px solid var(--line); padding:3px 10px 3px 0; text-align:left; }
kbd { border:1px solid var(--line); border-radius:3px; padding:0 4px; font-size:11px; }
#more { margin:14px 0; }
"""

JS = """
"use strict";
const POLL_MS = __POLL_MS__;
const S = {limit: 200, cards: new Map(), sel: null, busy: false};
const $ = (id) => document.getElementById(id);
const ORDER = ["pending", "submitting", "queued", "running", "downloading", "done", "failed",
  "cancelled", "uncertain"];

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}
function usd(x) { return x === null || x === undefined ? "unknown" : "$" + x.toFixed(2); }
function duration(s) {
  if (s === null || s === undefined) return "not known yet";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (h) return h + " h " + m + " min";
  if (m) return m + " min " + sec + " s";
  return sec + " s";
}
async function getJSON(url) {
  const r = await fetch(url, {cache: "no-store"});
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}

function drawStatus(st, live) {
  const counts = $("counts");
  counts.replaceChildren();
  for (const s of ORDER) {
    const n = (st.counts || {})[s];
    if (n) counts.append(el("span", {class: "badge s-" + s}, s, el("b", {text: String(n)})));
  }
  counts.append(el("span", {class: "muted", text: st.jobs + " jobs · " + st.files + " files"}));
  const c = st.cost || {};
  let cost = "cost " + usd(c.spent_usd) + " spent of " + usd(c.estimated_usd) + " estimated";
  if (c.possible_extra_usd) cost += "; possibly " + usd(c.possible_extra_usd) + " more";
  $("cost").textContent = cost;
  const left = ORDER.slice(0, 5).some((s) => (st.counts || {})[s]);
  $("eta").textContent = "ETA: " + (left ? duration(st.eta_s) : "finished");
  const m = st.marks || {};
  $("marks").textContent = "marked: keep " + (m.keep || 0) + ", reject " + (m.reject || 0);
  const state = $("live");
  state.textContent = live ? "● a run is writing this directory" : "○ no run going";
  state.className = live ? "live" : "idle";
  const fails = st.failures || [];
  $("failures-h").hidden = $("failures").hidden = !fails.length;
  $("failures").replaceChildren(...fails.slice(0, 200).map((f) => el("tr", {},
    el("td", {text: (f.shard ? f.shard + " " : "") + "#" + f.index}),
    el("td", {text: f.state}), el("td", {text: f.reason || "no reason given"}))));
}

function media(f) {
  if (f.media_type === "video") return el("video", {src: f.url, controls: "", preload: "metadata"});
  if (f.media_type === "audio") return el("audio", {src: f.url, controls: "", preload: "none"});
  return el("a", {href: f.url, target: "_blank"},
    el("img", {src: f.thumb, loading: "lazy", alt: f.name}));
}

function card(o) {
  const keep = el("button", {class: "keep", title: "keep (y)", text: "keep"});
  const reject = el("button", {class: "reject", title: "reject (x)", text: "reject"});
  const label = (o.shard ? o.shard + " " : "") + "#" + o.index;
  const c = el("div", {class: "card", "data-key": o.key, tabindex: "-1"},
    el("div", {class: "media"}, ...o.files.map(media)),
    el("div", {class: "body"}, el("div", {class: "muted", text: label + " · " + o.model}),
      el("p", {class: "prompt", text: o.prompt || ""}), el("div", {class: "btns"}, keep, reject)));
  keep.onclick = () => { select(o.key); setMark(o.key, "keep"); };
  reject.onclick = () => { select(o.key); setMark(o.key, "reject"); };
  c.onclick = (e) => { if (e.target === c || e.target.tagName === "P") select(o.key); };
  return c;
}

function showMark(key, mark) {
  const c = S.cards.get(key);
  if (!c) return;
  c.dataset.mark = mark || "";
  c.classList.toggle("m-keep", mark === "keep");
  c.classList.toggle("m-reject", mark === "reject");
  c.querySelector("button.keep").classList.toggle("on", mark === "keep");
  c.querySelector("button.reject").classList.toggle("on", mark === "reject");
}

function drawOutputs(list) {
  const grid = $("grid");
  const seen = new Set();
  list.forEach((o, i) => {
    seen.add(o.key);
    let c = S.cards.get(o.key);
    if (!c) { c = card(o); S.cards.set(o.key, c); }
    if (grid.children[i] !== c) grid.insertBefore(c, grid.children[i] || null);
    if (!S.pending || S.pending.key !== o.key) showMark(o.key, o.mark);
  });
  for (const [key, c] of S.cards) if (!seen.has(key)) { c.remove(); S.cards.delete(key); }
  $("none").hidden = list.length > 0;
  $("more").hidden = list.length < S.limit;
  if (!S.sel && list.length) select(list[0].key, false);
}

function select(key, scroll = true) {
  const old = S.cards.get(S.sel);
  if (old) old.classList.remove("sel");
  S.sel = key;
  const c = S.cards.get(key);
  if (!c) return;
  c.classList.add("sel");
  if (scroll) c.scrollIntoView({block: "nearest"});
}

async function setMark(key, mark) {
  const c = S.cards.get(key);
  const before = c ? c.dataset.mark || null : null;
  if (before === mark) mark = null;  // pressing the same mark again clears it
  showMark(key, mark);
  S.pending = {key};
  try {
    const r = await fetch("/api/marks", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({key, mark})});
    if (!r.ok) throw new Error((await r.json()).error || "HTTP " + r.status);
    $("error").textContent = "";
  } catch (e) {
    showMark(key, before);
    $("error").textContent = "mark not saved: " + e.message;
  } finally {
    S.pending = null;
  }
}

function neighbour(step) {
  const cards = [...$("grid").children];
  const i = cards.indexOf(S.cards.get(S.sel));
  if (Math.abs(step) !== 1 && cards.length) {  // a row: as many cards as share the first's top
    const top = cards[0].offsetTop;
    step = Math.sign(step) * Math.max(1, cards.filter((c) => c.offsetTop === top).length);
  }
  const j = Math.min(cards.length - 1, Math.max(0, (i < 0 ? 0 : i + step)));
  return cards[j] ? cards[j].dataset.key : null;
}

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || !S.sel) return;
  const moves = {ArrowRight: 1, l: 1, j: 1, ArrowLeft: -1, h: -1, k: -1, ArrowDown: 2,
    ArrowUp: -2};
  const marks = {y: "keep", "1": "keep", x: "reject", n: "reject", "2": "reject"};
  if (e.key in moves) {
    const key = neighbour(moves[e.key]);
    if (key) select(key);
  } else if (e.key in marks) {
    setMark(S.sel, marks[e.key]);
    const key = neighbour(1);
    if (key) select(key);
  } else if (e.key === "u" || e.key === "0" || e.key === "Backspace") {
    const c = S.cards.get(S.sel);
    if (c && c.dataset.mark) setMark(S.sel, c.dataset.mark);  // the same mark again: cleared
  } else {
    return;
  }
  e.preventDefault();
});

async function update() {
  try {
    const [st, out] = await Promise.all([getJSON("/api/status"),
      getJSON("/api/outputs?limit=" + S.limit)]);
    drawStatus(st, out.live);
    drawOutputs(out.outputs);
    $("conn").textContent = "updated " + new Date().toLocaleTimeString();
    $("conn").className = "muted";
  } catch (e) {
    $("conn").textContent = "cannot reach the server (" + e.message + "); retrying";
    $("conn").className = "err";
  }
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}
async function loop() { await update(); setTimeout(loop, POLL_MS); }
$("more").onclick = () => { S.limit += 200; update(); };
loop();
""".replace("__POLL_MS__", str(POLL_MS))

PAGE = (
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{{TITLE}} · batch-runner serve</title><style>"""
    + CSS
    + """</style></head>
<body><header><h1>{{TITLE}}</h1>
<div class="row"><span id="live" class="idle"></span><span id="counts" class="row"></span></div>
<div class="row"><span id="cost"></span><span id="eta"></span><span id="marks"></span>
<span id="conn" class="muted"></span><span id="error" class="err"></span></div>
<div class="muted">newest first · <kbd>←</kbd><kbd>→</kbd> (<kbd>h</kbd><kbd>l</kbd>)
<kbd>↑</kbd><kbd>↓</kbd> move · <kbd>y</kbd> keep · <kbd>x</kbd> reject (the same key again
clears) · <kbd>u</kbd> clear</div></header>
<main><h2>Outputs</h2><p id="none" class="muted">No outputs yet.</p><div id="grid"></div>
<button id="more" hidden>show more</button>
<h2 id="failures-h" hidden>Failures</h2><table id="failures" hidden></table></main>
<script>"""
    + JS
    + """</script></body></html>"""
)
