// The explorer page: plain JS over the JSON API of diffdrl/explore/app.py (see /api/openapi.json).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, a: null, b: null, values: [], attention: null, pending: 0 };

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

function clearError() { $("error").hidden = true; $("error-text").textContent = ""; }

// One call to the API: JSON in and out, or a file's bytes for uploads. A non-2xx answer shows its
// error in the page and rejects with it.
async function api(path, body) {
  let init = {};
  if (body instanceof Blob) {
    init = { method: "POST", body, headers: { "Content-Type": body.type || "application/octet-stream" } };
  } else if (body !== undefined) {
    init = { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } };
  }
  state.pending += 1;
  document.body.dataset.pending = state.pending;
  try {
    const response = await fetch(path, init);
    let data;
    try { data = await response.json(); } catch (err) { data = { error: `HTTP ${response.status}` }; }
    if (!response.ok) {
      const message = `${data.error || "request failed"} (HTTP ${response.status})`;
      showError(message);
      throw new ApiError(message, response.status);
    }
    return data;
  } finally {
    state.pending -= 1;
    document.body.dataset.pending = state.pending;
  }
}

// A progress indicator for requests slower than 250 ms: elapsed time and the worker's queue.
async function withProgress(promise, what) {
  let timer = null, poll = null;
  const start = performance.now();
  const update = async () => {
    try {
      const s = await (await fetch("/api/status")).json();
      const secs = ((performance.now() - start) / 1000).toFixed(1);
      const batch = s.busy_images ? `batch of ${s.busy_images}` : "";
      const waiting = s.waiting ? `, ${s.waiting} waiting` : "";
      $("progress-text").textContent = `${what}… ${secs} s ${batch}${waiting}`;
    } catch (err) { /* the status is only decoration */ }
  };
  timer = setTimeout(() => { $("progress").hidden = false; update(); poll = setInterval(update, 300); }, 250);
  try { return await promise; } finally {
    clearTimeout(timer); clearInterval(poll); $("progress").hidden = true;
  }
}

// The header's sampling options; start "inversion" (the default) edits the picked image itself,
// "noise" renders from fresh noise drawn from the seed.
function sampling() {
  const out = { seed: Number($("seed").value) || 0 };
  if (state.info.diffusion) {
    out.sampler = $("sampler").value;
    out.steps = Number($("steps").value);
    out.start = $("start").value;
  }
  return out;
}

const fromWhat = (s) => (s.start === "noise" ? `from fresh noise, seed ${s.seed}` : "from the image's inversion");
const dB = (psnr) => `PSNR ${psnr.toFixed(1)} dB`;

function setImage(img, src) { img.src = src; img.dataset.version = String(Number(img.dataset.version || 0) + 1); }

// -- slider renders: the newest slider state wins, one request in flight at a time ------------------

let rendering = false, dirty = false;
async function requestRender() {
  dirty = true;
  if (rendering || !state.a) return;
  rendering = true;
  try {
    while (dirty) {
      dirty = false;
      const body = { image_id: state.a.image_id, values: state.values.slice(), ...sampling() };
      try {
        const r = await withProgress(api("/api/render", body), "rendering");
        setImage($("edited"), r.png);
        $("edited").dataset.start = body.start || "";
        $("edited-start").textContent = state.info.diffusion ? fromWhat(body) : "";
        $("edited-caption").textContent = `${dB(r.psnr)} against the picked image · ${r.ms.toFixed(0)} ms`;
      } catch (err) { if (!(err instanceof ApiError)) showError(String(err)); }
    }
  } finally { rendering = false; }
}

// The picked image's two regenerations under its own units, each with its PSNR against it: the
// inversion round trip (the image comes back: what the edits start from) and fresh noise (what the
// units alone determine). A one-pass decoder has one decode, shown in both.
// Only the newest call shows its answers: an older one (other sampling options) may finish later.
let regenerations = 0;
async function regenerate() {
  if (!state.a) return;
  const call = ++regenerations;
  const body = { image_id: state.a.image_id, ...sampling() };
  const starts = state.info.diffusion ? ["inversion", "noise"] : [undefined];
  const [trip, fresh] = await withProgress(
    Promise.all(starts.map((start) => api("/api/render", { ...body, ...(start ? { start } : {}) }))), "regenerating");
  if (call !== regenerations) return;
  const noise = fresh || trip;
  setImage($("roundtrip-a"), trip.png);
  $("roundtrip-psnr").textContent = dB(trip.psnr);
  setImage($("regen-a"), noise.png);
  $("regen-psnr").textContent = dB(noise.psnr);
  $("regen-caption").firstChild.textContent = state.info.diffusion
    ? `from its units and fresh noise (seed ${body.seed})` : "decoded from its units";
}

// -- picking images -------------------------------------------------------------------------------

async function useA(image) {
  clearError();
  state.a = image;
  state.values = image.values.slice();
  state.attention = null;
  setImage($("image-a"), image.png);
  setImage($("attention-base"), image.png);
  const factors = image.factors ? state.info.factors.map((f, i) => `${f.name} ${image.factors[i]}`).join(", ") : "";
  $("meta-a").textContent = `${image.source} image ${image.image_id}${factors ? ": " + factors : ""}`;
  if (image.factors) image.factors.forEach((v, i) => { $(`factor-${i}`).value = v; });
  syncSliders();
  document.querySelectorAll(".strip").forEach((s) => s.remove());
  await Promise.all([regenerate(), requestRender()]);
}

function useB(image) { clearError(); state.b = image; setImage($("image-b"), image.png); }

let randomSeed = 1;
const randomImage = () => api("/api/images/random", { seed: randomSeed++ });
const upload = (file) => api("/api/images/upload", file);

// -- units ---------------------------------------------------------------------------------------------

function fraction(unit, v) { return (100 * (v - unit.low)) / (unit.high - unit.low); }

function buildUnits() {
  const box = $("units");
  box.innerHTML = "";
  for (const unit of state.info.units) {
    const row = document.createElement("div");
    row.className = "unit";
    row.dataset.unit = unit.index;
    const [name, factor] = unit.label.split(": ");
    row.innerHTML = `
      <div class="unit-row">
        <div class="unit-label" title="${unit.label}"><b>${unit.index}</b>${factor || "<i>no factor</i>"}</div>
        <div class="slider-wrap">
          <input class="unit-slider" type="range" data-unit="${unit.index}" min="${unit.low}" max="${unit.high}"
                 step="${(unit.high - unit.low) / 500}" value="${unit.median}" aria-label="${name}">
          <div class="source-mark" title="the image's own value"></div>
        </div>
        <div class="unit-value">0</div>
        <div class="unit-buttons">
          <button class="reset" data-unit="${unit.index}" title="back to the image's own value">&#8634;</button>
          <button class="strip-button" data-unit="${unit.index}" title="traversal strip of this unit">strip</button>
          <button class="swap" data-unit="${unit.index}" title="take this unit from the second image">swap</button>
        </div>
      </div>`;
    const wrap = row.querySelector(".slider-wrap");
    for (const anchor of unit.anchors || []) {
      if (anchor.value < unit.low || anchor.value > unit.high) continue;
      const mark = document.createElement("div");
      mark.className = "anchor";
      mark.style.left = `${fraction(unit, anchor.value)}%`;
      mark.style.opacity = String(0.35 + 0.65 * Math.min(1, anchor.weight * 4));
      mark.title = `DyGA anchor at ${anchor.value.toFixed(3)} (weight ${anchor.weight.toFixed(2)})`;
      wrap.appendChild(mark);
    }
    const slider = row.querySelector(".unit-slider");
    slider.addEventListener("input", () => {
      state.values[unit.index] = Number(slider.value);
      row.querySelector(".unit-value").textContent = Number(slider.value).toFixed(3);
      requestRender();
    });
    row.querySelector(".reset").addEventListener("click", () => {
      if (!state.a) return;
      state.values[unit.index] = state.a.values[unit.index];
      syncSliders();
      requestRender();
    });
    row.querySelector(".strip-button").addEventListener("click", () => showStrip(unit.index, row));
    row.querySelector(".swap").addEventListener("click", () => swap(unit.index));
    row.addEventListener("mouseenter", () => showAttention(unit.index, row));
    row.addEventListener("mouseleave", () => hideAttention(row));
    box.appendChild(row);
  }
  const anchored = state.info.units.some((u) => u.anchors && u.anchors.length);
  $("units-caption").textContent = anchored ? "▲ DyGA anchors · tick: the image's own value" : "tick: the image's own value";
}

function syncSliders() {
  document.querySelectorAll(".unit").forEach((row) => {
    const i = Number(row.dataset.unit), unit = state.info.units[i];
    const slider = row.querySelector(".unit-slider");
    slider.value = state.values[i];
    row.querySelector(".unit-value").textContent = state.values[i].toFixed(3);
    const own = state.a ? state.a.values[i] : unit.median;
    row.querySelector(".source-mark").style.left = `${Math.max(0, Math.min(100, fraction(unit, own)))}%`;
  });
}

async function showStrip(i, row) {
  if (!state.a) return;
  const old = row.querySelector(".strip");
  if (old) { old.remove(); return; }
  const r = await withProgress(api("/api/strip", { image_id: state.a.image_id, unit: i, count: 8, ...sampling() }),
    `traversing unit ${i}`);
  const strip = document.createElement("div");
  strip.className = "strip";
  strip.id = `strip-${i}`;
  r.pngs.forEach((png, k) => {
    const fig = document.createElement("figure");
    fig.innerHTML = `<img src="${png}" alt="unit ${i} at ${r.values[k]}"><figcaption>${r.values[k].toFixed(2)}</figcaption>`;
    strip.appendChild(fig);
  });
  row.appendChild(strip);
}

async function swap(unit) {
  if (!state.a || !state.b) { showError("pick a second image first (Random second image, or Upload)"); return; }
  const body = { source_id: state.a.image_id, target_id: state.b.image_id, unit, ...sampling() };
  const r = await withProgress(api("/api/swap", body), unit === "all" ? "swapping all units" : `swapping unit ${unit}`);
  setImage($("swap-result"), r.png);
  $("swap-caption").textContent = unit === "all" ? "all units from the second image" : `unit ${unit} from the second image`;
  $("swap-result").dataset.unit = String(unit);
}

// -- attention of the token under the cursor -------------------------------------------------------

async function showAttention(i, row) {
  row.classList.add("hover");
  if (!state.info.attention || !state.a) return;
  const id = state.a.image_id;
  try {
    if (!state.attention || state.attention.id !== id) {
      state.attention = { id, maps: (await api("/api/attention", { image_id: id, seed: sampling().seed })).maps };
    }
    if (!row.classList.contains("hover") || state.attention.id !== state.a.image_id) return;
    $("attention-overlay").src = state.attention.maps[i];
    $("attention-overlay").hidden = false;
    $("attention-note").textContent = `cross-attention of token ${i} (${state.info.units[i].label}) over the picked image (min-max scaled)`;
  } catch (err) { /* shown by api() */ }
}

function hideAttention(row) {
  row.classList.remove("hover");
  $("attention-overlay").hidden = true;
  $("attention-note").textContent = state.info.attention
    ? "hover a unit to see where its token is read" : (state.info.attention_reason || "");
}

// -- start ---------------------------------------------------------------------------------------------

function buildHeader() {
  const info = state.info;
  $("run-info").textContent =
    `${info.run} · ${info.model} · ${info.dataset} ${info.resolution}×${info.resolution} · ${info.num_units} units`;
  if (info.diffusion) {
    $("sampler").innerHTML = info.samplers.map((s) => `<option${s === info.sampler ? " selected" : ""}>${s}</option>`).join("");
    $("steps").value = info.steps;
    $("steps").max = info.max_steps;
    $("start").value = info.start;
  } else {
    for (const id of ["sampler", "steps", "start", "seed"]) $(id).parentElement.hidden = true;
    $("roundtrip-a").parentElement.hidden = true;
  }
  if (info.factors.length) {
    $("factor-picker").hidden = false;
    $("factor-fields").innerHTML = info.factors.map((f, i) =>
      `<label>${f.name}<input id="factor-${i}" type="number" min="0" max="${f.size - 1}" step="1" value="0"></label>`).join("");
  }
  hideAttention(document.createElement("div"));
}

function wire() {
  $("error-close").addEventListener("click", clearError);
  $("random-a").addEventListener("click", async () => useA(await randomImage()));
  $("random-b").addEventListener("click", async () => useB(await randomImage()));
  $("pick-factors").addEventListener("click", async () => {
    const factors = state.info.factors.map((_, i) => Number($(`factor-${i}`).value));
    useA(await api("/api/images/factors", { factors }));
  });
  for (const [input, use] of [["upload-a", useA], ["upload-b", useB]]) {
    $(input).addEventListener("change", async (event) => {
      const file = event.target.files[0];
      event.target.value = "";
      if (file) { try { use(await upload(file)); } catch (err) { /* shown */ } }
    });
  }
  $("swap-all").addEventListener("click", () => swap("all"));
  $("reset-all").addEventListener("click", () => {
    if (!state.a) return;
    state.values = state.a.values.slice();
    syncSliders();
    requestRender();
  });
  for (const id of ["sampler", "steps", "seed", "start"]) {
    $(id).addEventListener("change", () => { state.attention = null; regenerate(); requestRender(); });
  }
}

async function start() {
  try {
    state.info = await api("/api/info");
    buildHeader();
    buildUnits();
    wire();
    const [a, b] = [await randomImage(), await randomImage()];
    useB(b);
    await useA(a);
    document.body.dataset.ready = "1";
  } catch (err) {
    if (!(err instanceof ApiError)) showError(String(err));
  }
}

// idle(): no request in flight and no render waiting (what tests and screenshots wait for)
const idle = () => state.pending === 0 && !rendering && !dirty;
window.explorer = { api, state, useA, useB, swap, requestRender, idle, clearError };
start();
