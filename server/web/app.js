// app.js - attnd's page: streamed completion (/generate, NDJSON), chat
// (/v1/chat/completions, SSE) and the attention view (/v1/attention, f16 rows).
// No build step and nothing fetched from elsewhere: served from the binary.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { att: null, rows: [], sel: 0, tok: -1, cur: [0, 0], chat: [] };

function half(h) { // IEEE half to number
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, f = h & 1023;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

function rowsOf(b64, n) { // base64 of n x n little-endian halves
  const bin = atob(b64), out = new Float32Array(n * n);
  for (let i = 0; i < n * n; i++) out[i] = half(bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8));
  return out;
}

async function lines(resp, onLine) { // calls onLine for each complete line of a streamed body
  const reader = resp.body.getReader(), dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) onLine(line);
    }
  }
  if (buf.trim()) onLine(buf.trim());
}

async function errorText(resp) {
  if (resp.status === 401) return "this server needs an API key: enter it at the top";
  try { const j = await resp.json(); return j.error?.message ?? j.error ?? resp.statusText; }
  catch { return resp.statusText; }
}

// The server's api_key, when it has one: kept in this browser, sent as a bearer token.
function headers() {
  const key = $("api-key").value;
  return { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}) };
}

function params() {
  return { prompt: $("prompt").value, max_tokens: Number($("max-tokens").value),
           temperature: Number($("temperature").value) };
}

async function generate() {
  const out = $("output"), btn = $("generate");
  out.textContent = ""; out.dataset.done = "false"; btn.disabled = true;
  try {
    const p = params();
    const resp = await fetch("/generate", { method: "POST", headers: headers(),
      body: JSON.stringify({ ...p, max_tokens: Math.max(1, p.max_tokens), stream: true }) });
    if (!resp.ok) { out.textContent = "error: " + await errorText(resp); return; }
    await lines(resp, (line) => {
      const o = JSON.parse(line);
      if (o.done) { out.dataset.finish = o.finish_reason; return; }
      out.textContent += o.text;
    });
  } catch (e) { out.textContent += "\nerror: " + e.message; }
  finally { btn.disabled = false; out.dataset.done = "true"; }
}

async function send() {
  const input = $("chat-input"), text = input.value.trim();
  if (!text) return;
  input.value = ""; $("chat-error").textContent = "";
  state.chat.push({ role: "user", content: text });
  const li = (role, content) => { const e = document.createElement("li"); e.className = role;
    e.textContent = content; $("messages").append(e); return e; };
  li("user", text);
  const reply = li("assistant", "");
  const resp = await fetch("/v1/chat/completions", { method: "POST", headers: headers(),
    body: JSON.stringify({ messages: state.chat, max_tokens: Math.max(1, Number($("max-tokens").value)),
                           temperature: Number($("temperature").value), stream: true }) });
  if (!resp.ok) { reply.remove(); state.chat.pop(); $("chat-error").textContent = await errorText(resp); return; }
  await lines(resp, (line) => {
    if (!line.startsWith("data: ") || line === "data: [DONE]") return;
    const o = JSON.parse(line.slice(6));
    if (o.error) { $("chat-error").textContent = o.error.message; return; }
    for (const c of o.choices ?? []) reply.textContent += c.delta?.content ?? "";
  });
  state.chat.push({ role: "assistant", content: reply.textContent });
}

function shade(ctx, w, n, x0, y0, cell) { // rows of n x n weights as blue squares
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      const v = Math.sqrt(w[i * n + j]); // square root: faint weights stay visible
      ctx.fillStyle = `rgb(${Math.round(255 - 244 * v)},${Math.round(255 - 156 * v)},${Math.round(255 - 58 * v)})`;
      ctx.fillRect(x0 + j * cell, y0 + i * cell, cell, cell);
    }
}

function tokenLabel(t) { return JSON.stringify(t.text); }

function drawDetail() {
  const a = state.att, n = a.positions, w = state.rows[state.sel], h = a.attention[state.sel];
  $("detail-title").textContent = `Layer ${h.layer}, head ${h.head}`;
  // the tokens label both axes: queries down the left, keys along the top
  const cv = $("heatmap"), cell = Math.max(4, Math.min(24, Math.floor(640 / n)));
  const ML = 96, MT = 72, font = Math.min(12, Math.max(7, cell - 2));
  cv.width = ML + n * cell; cv.height = MT + n * cell;
  Object.assign(cv.dataset, { cell, ml: ML, mt: MT, layer: h.layer, head: h.head });
  const ctx = cv.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, cv.width, cv.height);
  shade(ctx, w, n, ML, MT, cell);
  ctx.fillStyle = "#1b1f24"; ctx.font = `${font}px ui-monospace, monospace`; ctx.textBaseline = "middle";
  const label = (k) => { const t = a.tokens[k].text; return (t === "" ? "∅" : t).slice(0, 10); };
  ctx.textAlign = "right";
  for (let i = 0; i < n; i++) { ctx.fillStyle = i === state.tok ? "#0b63c5" : "#1b1f24"; ctx.fillText(label(i), ML - 4, MT + (i + .5) * cell); }
  for (let j = 0; j < n; j++) {
    ctx.save(); ctx.translate(ML + (j + .5) * cell, MT - 4); ctx.rotate(-Math.PI / 3); ctx.textAlign = "left";
    ctx.fillStyle = j === state.tok ? "#0b63c5" : "#1b1f24"; ctx.fillText(label(j), 0, 0); ctx.restore();
  }
  if (state.tok >= 0) { // its row (what it attends to) and column (what attends to it)
    ctx.strokeStyle = "#f0a202"; ctx.lineWidth = 2;
    ctx.strokeRect(ML + 1, MT + state.tok * cell + 1, (state.tok + 1) * cell - 2, cell - 2);
    ctx.strokeRect(ML + state.tok * cell + 1, MT + state.tok * cell + 1, cell - 2, (n - state.tok) * cell - 2);
  }
  const [ci, cj] = state.cur;
  ctx.strokeStyle = "#1b1f24"; ctx.lineWidth = 1;
  ctx.strokeRect(ML + cj * cell + .5, MT + ci * cell + .5, cell - 1, cell - 1);
  document.querySelectorAll("#tokens .tok").forEach((b, k) => {
    const to = state.tok >= 0 && k <= state.tok ? w[state.tok * n + k] : 0;
    const from = state.tok >= 0 && k >= state.tok ? w[k * n + state.tok] : 0;
    b.dataset.to = to; b.dataset.from = from;
    b.style.background = state.tok >= 0 ? `rgba(11,99,197,${Math.sqrt(to) * .8})` : "";
    b.style.boxShadow = state.tok >= 0 ? `inset 0 -4px 0 rgba(240,162,2,${Math.sqrt(from)})` : "";
    b.classList.toggle("selected", k === state.tok);
    b.setAttribute("aria-pressed", k === state.tok);
  });
  document.querySelectorAll("#grid .thumb").forEach((b, k) => b.setAttribute("aria-pressed", k === state.sel));
}

function readout(i, j) {
  const a = state.att, n = a.positions, r = $("readout");
  state.cur = [i, j];
  const v = j <= i ? state.rows[state.sel][i * n + j] : 0;
  r.dataset.q = i; r.dataset.k = j; r.dataset.weight = v;
  r.textContent = `query ${i} ${tokenLabel(a.tokens[i])} → key ${j} ${tokenLabel(a.tokens[j])}: ${v.toFixed(4)}`;
}

function select(k) { state.sel = k; drawDetail(); readout(...state.cur); }

function render(a) {
  state.att = a; state.sel = 0; state.tok = -1; state.cur = [0, 0];
  const n = a.positions;
  state.rows = a.attention.map((h) => rowsOf(h.probs, n));
  $("att-status").textContent = `${n} positions, ${a.layers.length} layers × ${a.heads.length} heads`;
  const grid = $("grid");
  grid.replaceChildren();
  grid.style.setProperty("--heads", a.heads.length);
  grid.append(document.createElement("span"));
  for (const h of a.heads) { const s = document.createElement("span"); s.className = "lab"; s.textContent = `h${h}`; grid.append(s); }
  a.attention.forEach((h, k) => {
    if (k % a.heads.length === 0) { const s = document.createElement("span"); s.className = "lab"; s.textContent = `L${h.layer}`; grid.append(s); }
    const b = document.createElement("button");
    b.className = "thumb"; b.dataset.layer = h.layer; b.dataset.head = h.head;
    b.setAttribute("aria-label", `layer ${h.layer} head ${h.head}, mean entropy ${(h.entropy.reduce((x, y) => x + y, 0) / n).toFixed(2)}`);
    const c = document.createElement("canvas"); c.width = c.height = n;
    shade(c.getContext("2d"), state.rows[k], n, 0, 0, 1);
    b.append(c); b.addEventListener("click", () => select(k)); grid.append(b);
  });
  const toks = $("tokens");
  toks.replaceChildren();
  a.tokens.slice(0, n).forEach((t, k) => {
    const b = document.createElement("button");
    b.className = "tok"; b.textContent = t.text === "" ? "∅" : t.text; b.title = `position ${k}, id ${t.id}`;
    if (k >= a.n_prompt) b.classList.add("generated");
    b.addEventListener("click", () => { state.tok = state.tok === k ? -1 : k; drawDetail(); });
    toks.append(b);
  });
  $("attention").hidden = false;
  drawDetail(); readout(0, 0);
}

async function showAttention() {
  const btn = $("show-attention");
  btn.disabled = true; $("att-status").textContent = "computing…";
  try {
    const p = params();
    const resp = await fetch("/v1/attention", { method: "POST", headers: headers(),
      body: JSON.stringify({ ...p, format: "f16" }) });
    if (!resp.ok) { $("attention").hidden = false; $("att-status").textContent = "error: " + await errorText(resp); return; }
    render(await resp.json());
  } finally { btn.disabled = false; }
}

function onHeat(ev) {
  const cv = $("heatmap"), d = cv.dataset, cell = Number(d.cell), r = cv.getBoundingClientRect();
  const sx = cv.width / r.width;
  const i = Math.floor(((ev.clientY - r.top) * sx - d.mt) / cell), j = Math.floor(((ev.clientX - r.left) * sx - d.ml) / cell);
  if (i >= 0 && j >= 0 && i < state.att.positions && j < state.att.positions) { readout(i, j); drawDetail(); }
}

function onKey(ev) {
  if (!state.att) return;
  let [i, j] = state.cur;
  const n = state.att.positions;
  const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
  if (moves[ev.key]) {
    i = Math.min(n - 1, Math.max(0, i + moves[ev.key][0])); j = Math.min(i, Math.max(0, j + moves[ev.key][1]));
    readout(i, j); drawDetail(); ev.preventDefault();
  } else if (ev.key === "Enter" || ev.key === " ") { state.tok = i; drawDetail(); ev.preventDefault(); }
}

function tab(which) {
  for (const t of ["complete", "chat"]) {
    $("tab-" + t).setAttribute("aria-selected", t === which); $("panel-" + t).hidden = t !== which;
  }
}

$("generate").addEventListener("click", generate);
$("show-attention").addEventListener("click", showAttention);
$("send").addEventListener("click", send);
$("chat-input").addEventListener("keydown", (e) => { if (e.key === "Enter") send(); });
$("tab-complete").addEventListener("click", () => tab("complete"));
$("tab-chat").addEventListener("click", () => tab("chat"));
$("heatmap").addEventListener("mousemove", onHeat);
$("heatmap").addEventListener("keydown", onKey);
$("api-key").value = localStorage.getItem("attnd-api-key") ?? "";
$("api-key").addEventListener("change", () => { localStorage.setItem("attnd-api-key", $("api-key").value); props(); });
function props() {
  fetch("/props", { headers: headers() }).then((r) => r.ok ? r.json() : Promise.reject(r))
    .then((p) => { $("model").textContent = `${p.model} · ${p.architecture}`; })
    .catch(() => { $("model").textContent = "(enter the API key to use this server)"; });
}
props();
