// ragstore's web console: plain DOM over the public /v1 API, with the user's key. Whatever the
// server returns (file names, attributes, chunk text, error messages) is only ever set as text,
// never parsed as markup.
"use strict";

const KEY_STORAGE = "ragstore.apiKey";
const POLL_MS = 700;
const OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"];

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

const state = {
  files: [], // GET /v1/files
  stores: [], // GET /v1/vector_stores
  store: null, // the open store's id
  storeFiles: [], // its files
  filesKey: null, // their ids and statuses at the last load (null: not loaded yet)
  poll: null, // the timer of the next refresh of the open store's files
  storeLoads: 0, // requests of the store list made so far (a late answer is dropped)
  loads: 0, // counts loads of the open store's files: only the latest one is shown
};

let memoryKey = ""; // where the key lives when localStorage cannot be used
function getKey() {
  try { return localStorage.getItem(KEY_STORAGE) || ""; } catch { return memoryKey; }
}
function setKey(key) {
  memoryKey = key;
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch { /* kept in memory only */ }
}

/** `el("td", {class: "x", onclick: f}, "text", child)`: children are text or nodes. */
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k.includes("-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false || c === "") continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function showMessage(text, kind = "error") {
  const m = $("message");
  m.textContent = text || "";
  m.className = kind;
  m.hidden = !text;
}

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** One call of the public API; an error answer becomes an ApiError with the server's message. */
async function api(method, path, body) {
  const headers = {};
  const key = getKey();
  if (key) headers.Authorization = "Bearer " + key;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch("/v1" + path, { method, headers, body: payload });
  } catch (e) {
    throw new ApiError(0, "The server could not be reached (" + e.message + ").");
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(res.status, err.message || `${res.status} ${res.statusText}`, err.code);
  }
  return data;
}

/** Shows an error; a 401 also asks for the key (and shows nothing a previous key listed). */
function report(e) {
  if (e instanceof ApiError && e.status === 401) {
    closeStore();
    state.files = [];
    state.stores = [];
    renderFiles();
    renderStores();
    $("files-empty").hidden = true;
    $("stores-empty").hidden = true;
    showMessage(e.message + " Enter a valid API key above.");
    $("key-form").classList.add("needs-key");
    $("api-key").focus();
  } else {
    showMessage(e.message || String(e));
  }
}

function formatBytes(n) {
  if (n < 1024) return n + " B";
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < units.length - 1);
  return n.toFixed(n < 10 ? 1 : 0) + " " + units[i];
}
const formatTime = (secs) => new Date(secs * 1000).toLocaleString();
const badge = (status) => el("span", { class: "badge " + status }, status);

function formatAttrs(attrs) {
  return Object.entries(attrs || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
}

/** As `ragstore search --filter` types values: true/false are booleans, numbers are numbers. */
function typed(raw) {
  const s = raw.trim();
  if (s === "true") return true;
  if (s === "false") return false;
  if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(s)) return Number(s);
  return s;
}

/** `team=docs, year=2024` or a JSON object; null when empty. */
function parseAttributes(text) {
  const s = text.trim();
  if (!s) return null;
  if (s.startsWith("{")) {
    try { return JSON.parse(s); } catch (e) { throw new Error("Attributes: " + e.message); }
  }
  const out = {};
  for (const pair of s.split(",")) {
    if (!pair.trim()) continue;
    const at = pair.indexOf("=");
    if (at < 1) throw new Error(`Attributes: expected key=value, got "${pair.trim()}".`);
    out[pair.slice(0, at).trim()] = typed(pair.slice(at + 1));
  }
  return out;
}

// ---- files

async function loadFiles() {
  const page = await api("GET", "/files?limit=100");
  state.files = page.data;
  $("files-more").hidden = !page.has_more;
  renderFiles();
}

function renderFiles() {
  $("files-body").replaceChildren(...state.files.map((f) => el("tr", { dataset: { id: f.id } },
    el("td", { class: "name" }, f.filename),
    el("td", { class: "mono" }, f.id),
    el("td", { class: "num" }, formatBytes(f.bytes)),
    el("td", {}, badge(f.status)),
    el("td", {}, formatTime(f.created_at)),
    el("td", {}, el("button", { type: "button", class: "danger", onclick: () => deleteFile(f) }, "Delete")),
  )));
  $("files-empty").hidden = state.files.length > 0;
  const select = $("attach-file");
  const chosen = select.value;
  select.replaceChildren(...state.files.map((f) => el("option", { value: f.id }, `${f.filename} (${f.id})`)));
  if (!state.files.length) select.append(el("option", { value: "" }, "(no files)"));
  if (state.files.some((f) => f.id === chosen)) select.value = chosen;
  if (state.store) renderStoreFiles();
}

async function uploadFiles(list) {
  for (const file of list) {
    showMessage(`Uploading ${file.name}…`, "info");
    const form = new FormData();
    form.append("purpose", "assistants");
    form.append("file", file, file.name);
    try {
      const f = await api("POST", "/files", form);
      showMessage(`Uploaded ${f.filename} (${f.id}).`, "info");
    } catch (e) {
      report(e);
      break;
    }
  }
  await loadFiles().catch(report);
}

async function deleteFile(f) {
  if (!confirm(`Delete ${f.filename}? It is removed from every vector store too.`)) return;
  try {
    await api("DELETE", `/files/${enc(f.id)}`);
    showMessage(`Deleted ${f.filename}.`, "info");
  } catch (e) {
    report(e);
  }
  await refreshAll();
}

// ---- vector stores

async function loadStores() {
  const load = ++state.storeLoads;
  const page = await api("GET", "/vector_stores?limit=100");
  if (load !== state.storeLoads) return; // an answer to a later request came first
  state.stores = page.data;
  if (state.store && !state.stores.some((s) => s.id === state.store)) closeStore();
  renderStores();
}

function renderStores() {
  $("stores-body").replaceChildren(...state.stores.map((s) => {
    const c = s.file_counts || {};
    const counts = [`${c.completed}/${c.total} completed`];
    if (c.in_progress) counts.push(`${c.in_progress} in progress`);
    if (c.failed) counts.push(`${c.failed} failed`);
    return el("tr", { dataset: { id: s.id }, class: s.id === state.store ? "selected" : "" },
      el("td", { class: "name" }, s.name || "(unnamed)"),
      el("td", { class: "mono" }, s.id),
      el("td", {}, counts.join(", ")),
      el("td", {}, badge(s.status)),
      el("td", { class: "actions" },
        el("button", { type: "button", onclick: () => openStore(s.id) }, "Open"),
        el("button", { type: "button", class: "danger", onclick: () => deleteStore(s) }, "Delete")));
  }));
  $("stores-empty").hidden = state.stores.length > 0;
  const select = $("search-store");
  const chosen = select.value || state.store;
  select.replaceChildren(...state.stores.map((s) => el("option", { value: s.id }, `${s.name || "(unnamed)"} (${s.id})`)));
  if (!state.stores.length) select.append(el("option", { value: "" }, "(no vector stores)"));
  if (state.stores.some((s) => s.id === chosen)) select.value = chosen;
  if (state.store) {
    const s = state.stores.find((x) => x.id === state.store);
    $("store-title").textContent = `${(s && s.name) || "(unnamed)"} · ${state.store}`;
  }
}

async function createStore(ev) {
  ev.preventDefault();
  const name = $("store-name").value.trim();
  try {
    const s = await api("POST", "/vector_stores", name ? { name } : {});
    $("store-name").value = "";
    showMessage(`Created vector store ${s.name || s.id}.`, "info");
    await loadStores();
    openStore(s.id);
    $("search-store").value = s.id;
  } catch (e) {
    report(e);
  }
}

async function deleteStore(s) {
  if (!confirm(`Delete vector store ${s.name || s.id}? Its files stay.`)) return;
  try {
    await api("DELETE", `/vector_stores/${enc(s.id)}`);
    showMessage(`Deleted vector store ${s.name || s.id}.`, "info");
  } catch (e) {
    report(e);
  }
  await loadStores().catch(report);
}

function openStore(id) {
  state.store = id;
  state.storeFiles = [];
  state.filesKey = null;
  $("store-detail").hidden = false;
  renderStores();
  renderStoreFiles();
  loadStoreFiles().catch(report);
}

function closeStore() {
  clearTimeout(state.poll);
  state.loads++;
  state.store = null;
  state.storeFiles = [];
  state.filesKey = null;
  $("store-detail").hidden = true;
}

/** The open store's files; again every POLL_MS while any is in progress. */
async function loadStoreFiles() {
  clearTimeout(state.poll);
  state.poll = null;
  const id = state.store;
  if (!id) return;
  const load = ++state.loads;
  const page = await api("GET", `/vector_stores/${enc(id)}/files?limit=100`);
  if (load !== state.loads) return; // a newer load (or another store) took over
  // Any file that changed status since the last load (also one attached and failed before
  // this load saw it in progress) changes the store's counts and the file's own status.
  const key = page.data.map((f) => `${f.id}:${f.status}`).join(" ");
  const changed = state.filesKey !== null && key !== state.filesKey;
  state.filesKey = key;
  state.storeFiles = page.data;
  renderStoreFiles();
  const busy = state.storeFiles.some((f) => f.status === "in_progress");
  if (busy) state.poll = setTimeout(() => loadStoreFiles().catch(report), POLL_MS);
  if (changed && !busy) { // file counts and file statuses changed
    loadStores().catch(report);
    loadFiles().catch(report);
  }
}

function renderStoreFiles() {
  const names = new Map(state.files.map((f) => [f.id, f.filename]));
  $("store-files-body").replaceChildren(...state.storeFiles.map((vf) => {
    const p = vf.progress || {};
    const done = p.chunks_indexed || 0;
    const total = p.chunks_total;
    const bar = el("progress", { max: Math.max(total || 0, 1) });
    if (total !== null && total !== undefined) bar.value = total ? done : 1;
    else if (vf.status !== "in_progress") bar.value = 0;
    const status = el("td", { class: "status" }, badge(vf.status));
    if (vf.last_error) {
      status.append(el("div", { class: "error-text" }, `${vf.last_error.code}: ${vf.last_error.message}`));
    }
    return el("tr", { dataset: { id: vf.id } },
      el("td", { class: "name" }, names.get(vf.id) || vf.id, el("div", { class: "mono muted" }, vf.id)),
      status,
      el("td", { class: "progress" }, bar, " ",
        total === null || total === undefined ? `${done} chunks indexed` : `${done}/${total} chunks`),
      el("td", { class: "mono" }, formatAttrs(vf.attributes)),
      el("td", {}, el("button", { type: "button", class: "danger", onclick: () => detach(vf) }, "Detach")));
  }));
  $("store-files-empty").hidden = state.storeFiles.length > 0;
}

async function attach(ev) {
  ev.preventDefault();
  const fileId = $("attach-file").value;
  if (!state.store) return;
  if (!fileId) {
    showMessage("Upload a file first, then attach it.");
    return;
  }
  try {
    const body = { file_id: fileId };
    const attributes = parseAttributes($("attach-attrs").value);
    if (attributes) body.attributes = attributes;
    await api("POST", `/vector_stores/${enc(state.store)}/files`, body);
    showMessage(`Attached ${fileId}.`, "info");
  } catch (e) {
    report(e);
  }
  await Promise.all([loadStoreFiles(), loadStores()]).catch(report);
}

async function detach(vf) {
  try {
    await api("DELETE", `/vector_stores/${enc(state.store)}/files/${enc(vf.id)}`);
    showMessage(`Detached ${vf.id}.`, "info");
  } catch (e) {
    report(e);
  }
  await Promise.all([loadStoreFiles(), loadStores()]).catch(report);
}

// ---- search

function addFilterRow() {
  const row = el("div", { class: "filter-row" },
    el("input", { class: "f-key", placeholder: "attribute", "aria-label": "Filter attribute" }),
    el("select", { class: "f-op", "aria-label": "Filter operator" }, OPS.map((op) => el("option", { value: op }, op))),
    el("input", { class: "f-value", placeholder: "value (in, nin: a, b, c)", "aria-label": "Filter value" }),
    el("button", { type: "button", title: "Remove this filter", onclick: () => row.remove() }, "Remove"));
  $("filters").append(row);
  row.querySelector(".f-key").focus();
}

/** The filter rows as a search `filters` object (several are and-ed); null when none. */
function readFilters() {
  const filters = [];
  for (const row of document.querySelectorAll("#filters .filter-row")) {
    const key = row.querySelector(".f-key").value.trim();
    if (!key) continue;
    const type = row.querySelector(".f-op").value;
    const raw = row.querySelector(".f-value").value;
    const value = type === "in" || type === "nin"
      ? raw.split(",").filter((v) => v.trim()).map(typed)
      : typed(raw);
    filters.push({ type, key, value });
  }
  if (!filters.length) return null;
  return filters.length === 1 ? filters[0] : { type: "and", filters };
}

/** Where in its file a chunk came from, from a hit's `extra`. */
function place(extra) {
  if (!extra) return "";
  const parts = [];
  if (extra.page !== undefined) {
    parts.push(extra.page_end !== undefined && extra.page_end !== extra.page
      ? `pages ${extra.page}–${extra.page_end}` : `page ${extra.page}`);
  }
  for (const k of ["slide", "sheet", "chapter", "section"]) {
    if (extra[k] !== undefined && extra[k] !== null) parts.push(`${k} ${extra[k]}`);
  }
  return parts.join(", ");
}

async function search(ev) {
  ev.preventDefault();
  const store = $("search-store").value;
  const query = $("search-query").value.trim();
  if (!store) return showMessage("Create a vector store first.");
  if (!query) return showMessage("Type a query.");
  const body = { query, max_num_results: Number($("search-k").value) || 10 };
  try {
    const filters = readFilters();
    if (filters) body.filters = filters;
  } catch (e) {
    return report(e);
  }
  $("search-summary").textContent = "Searching…";
  const started = performance.now();
  try {
    const page = await api("POST", `/vector_stores/${enc(store)}/search`, body);
    const ms = Math.round(performance.now() - started);
    $("search-summary").textContent = page.data.length
      ? `${page.data.length} result${page.data.length === 1 ? "" : "s"} in ${ms} ms` : "No results.";
    $("results").replaceChildren(...page.data.map((hit) => el("li", { class: "hit" },
      el("div", { class: "hit-head" },
        el("span", { class: "score", title: "score" }, hit.score.toFixed(3)),
        el("span", { class: "filename" }, hit.filename),
        el("span", { class: "place" }, place(hit.extra)),
        el("span", { class: "mono muted" }, hit.file_id)),
      Object.keys(hit.attributes || {}).length ? el("div", { class: "mono muted" }, formatAttrs(hit.attributes)) : null,
      el("div", { class: "chunk" }, (hit.content || []).map((c) => c.text).join("\n")))));
  } catch (e) {
    $("search-summary").textContent = "";
    $("results").replaceChildren();
    report(e);
  }
}

// ---- start

async function refreshAll() {
  try {
    await Promise.all([loadFiles(), loadStores()]);
    $("key-form").classList.remove("needs-key");
    if (state.store) await loadStoreFiles();
    return true;
  } catch (e) {
    report(e);
    return false;
  }
}

function setUp() {
  $("api-key").value = getKey();
  $("key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setKey($("api-key").value.trim());
    showMessage("");
    if (await refreshAll()) showMessage("Key saved in this browser.", "info");
  });
  $("refresh").addEventListener("click", () => { showMessage(""); refreshAll(); });

  const zone = $("drop-zone");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const files = e.dataTransfer ? [...e.dataTransfer.files] : [];
    if (files.length) uploadFiles(files);
  });
  zone.addEventListener("click", (e) => { if (e.target === zone) $("file-input").click(); });
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file-input").click(); }
  });
  $("file-input").addEventListener("change", (e) => {
    const files = [...e.target.files];
    e.target.value = "";
    if (files.length) uploadFiles(files);
  });
  // A file dropped beside the zone must not replace the page.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());

  $("store-form").addEventListener("submit", createStore);
  $("attach-form").addEventListener("submit", attach);
  $("search-form").addEventListener("submit", search);
  $("add-filter").addEventListener("click", addFilterRow);
  refreshAll();
}

setUp();
