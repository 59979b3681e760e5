// deconvlab explorer: plain JS, no build step. Every number comes from the JSON API (/openapi.json).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { status: null, images: null, units: {}, live: {}, pages: {} };

// ---- talking to the API --------------------------------------------------------------------------

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

function query(params) {
  return new URLSearchParams(params).toString();
}

function checkedValue(name) {
  return document.querySelector(`input[name="${name}"]:checked`).value;
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// Each view keeps only the answer to its latest request: a slower, older answer is dropped.
const latest = {};
function ticket(view) {
  latest[view] = (latest[view] || 0) + 1;
  const mine = latest[view];
  return () => latest[view] === mine;
}

function element(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

// ---- colours ---------------------------------------------------------------------------------------

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const CATEGORIES = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#843c39", "#7b4173"];

function viridis(t) {
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - i;
  return VIRIDIS[i].map((a, c) => Math.round(a + f * (VIRIDIS[i + 1][c] - a)));
}

function hexColour(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

// Draw a 2D array of numbers as a heatmap (or categories) on a canvas, one cell per value.
function drawGrid(canvas, rows, colour) {
  const h = rows.length, w = rows[0].length;
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  const pixels = ctx.createImageData(w, h);
  rows.forEach((row, y) => row.forEach((v, x) => {
    const [r, g, b] = colour(v);
    pixels.data.set([r, g, b, 255], 4 * (y * w + x));
  }));
  ctx.putImageData(pixels, 0, 0);
}

function range(rows) {
  const flat = rows.flat();
  return [Math.min(...flat), Math.max(...flat)];
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`could not load ${src.slice(0, 60)}`));
    img.src = src;
  });
}

// Draw an image and, optionally, a receptive-field box [y0, y1, x0, x1] in image pixels.
async function drawImageWithBox(canvas, src, box, size) {
  const img = await loadImage(src);
  const scale = canvas.width / size;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  if (box) {
    const [y0, y1, x0, x1] = box;
    ctx.strokeStyle = "#ffeb3b"; ctx.lineWidth = 2;
    ctx.strokeRect(x0 * scale + 1, y0 * scale + 1, (x1 - x0) * scale - 2, (y1 - y0) * scale - 2);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1;
    ctx.strokeRect(x0 * scale, y0 * scale, (x1 - x0) * scale, (y1 - y0) * scale);
  }
}

// ---- status and navigation ---------------------------------------------------------------------------

async function pollStatus() {
  const status = await api("/api/status");
  const firstReady = status.state === "ready" && !(state.status && state.status.state === "ready");
  state.status = status;
  showProgress(status);
  if (status.state === "loading" || (status.state === "ready" && !status.units_ready)) {
    setTimeout(() => pollStatus().catch(showError), 1000);
  }
  if (firstReady) {
    prepareControls(status);
    await refreshImages();
    showPage(currentPage(), true);
  } else if (status.units_ready && currentPage() === "units" && !state.pages.units) {
    showPage("units", true);
  }
}

function showProgress(status) {
  const bar = $("status-bar"), p = status.progress;
  const busy = status.state === "loading" || (status.state === "ready" && !status.units_ready);
  $("status").hidden = !(busy || status.state === "error");
  bar.hidden = status.state === "error";
  if (status.state === "error") {
    $("status-text").textContent = `The model could not be loaded: ${p.message}`;
  } else if (busy) {
    const what = status.state === "loading" ? "Preparing the model" : "Scanning the dataset for the Units page";
    const count = p.total ? ` ${p.done} of ${p.total},` : "";
    $("status-text").textContent = `${what}: ${p.stage}${p.message ? ` (${p.message})` : ""} —${count} ${p.seconds} s`;
    if (p.total) { bar.max = p.total; bar.value = p.done; } else { bar.removeAttribute("value"); }
  }
}

function prepareControls(status) {
  $("model-name").textContent = `${status.model} · ${status.input_size}×${status.input_size} · ` +
    `${status.classes.length} classes · ${status.dataset_size} dataset images`;
  for (const select of [$("units-layer"), $("live-layer")]) {
    select.replaceChildren(...status.layers.map((l) => element("option", {
      value: l.name, textContent: `${l.name} (${l.channels}×${l.height}×${l.width})`,
    })));
  }
  $("live-layer").value = status.layers[Math.min(1, status.layers.length - 1)].name;
  $("units-layer").value = status.layers[status.layers.length - 1].name;
  $("occ-window").max = Math.floor(status.input_size / 2);
  $("occ-stride").max = Math.floor(status.input_size / 4);
}

function currentPage() {
  const name = location.hash.slice(1);
  return ["units", "live", "occlusion", "arithmetic"].includes(name) ? name : "units";
}

function showPage(name, modelChanged = false) {
  for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== `page-${name}`;
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    link.classList.toggle("active", link.dataset.page === name);
  }
  showError(null);
  const ready = state.status && state.status.state === "ready" && (name !== "units" || state.status.units_ready);
  if (name === "arithmetic") arithmetic();
  else if (ready && (modelChanged || !state.pages[name])) {
    state.pages[name] = true;
    ({ units: loadUnits, live: loadLive, occlusion: occlusion })[name]().catch(showError);
  }
}

async function refreshImages(selected) {
  state.images = await api("/api/images");
  if (!selected && !$("occ-image").value && state.images.dataset.length) {
    $("occ-image").dataset.initial = state.images.dataset[0];  // occlusion: an image with a true label
  }
  const groups = [["samples", "scikit-image photos"], ["dataset", "dataset (one per class)"], ["uploads", "uploads"]];
  for (const select of document.querySelectorAll(".image-select")) {
    const keep = selected || select.value || select.dataset.initial;
    select.replaceChildren(...groups.filter(([key]) => state.images[key].length).map(([key, label]) =>
      element("optgroup", { label }, state.images[key].map((ref) => element("option", { value: ref, textContent: ref })))));
    if (keep && [...select.options].some((o) => o.value === keep)) select.value = keep;
  }
}

// ---- Units ------------------------------------------------------------------------------------------------

async function loadUnits() {
  const layer = $("units-layer").value;
  const current = ticket("units");
  const data = await api(`/api/units?${query({ layer })}`);
  if (!current()) return;
  state.units = data;
  $("unit-detail").hidden = true;
  $("units-grid").replaceChildren(...data.channels.map((channel) => {
    const files = channel.units.map(fileName).join("\n");
    const card = element("div", { className: "card", title: `channel ${channel.channel}, strongest first:\n${files}` }, [
      element("img", { src: `/api/units/grid.png?${query({ layer, channel: channel.channel })}`, loading: "lazy",
        alt: `top ${channel.units.length} of channel ${channel.channel}` }),
      element("div", { textContent: `channel ${channel.channel} · max ${channel.units[0].value.toFixed(2)}` }),
    ]);
    card.dataset.channel = channel.channel;
    card.addEventListener("click", () => selectUnit(channel, card).catch(showError));
    return card;
  }));
  const skipped = data.skipped || [];
  $("units-skipped").hidden = !skipped.length;
  $("units-skipped").textContent = skipped.length
    ? `Skipped, could not be read (${skipped.length}): ${skipped.map((s) => `${s.path}: ${s.reason}`).join("; ")}`
    : "";
}

async function selectUnit(channel, card) {
  for (const other of document.querySelectorAll(".card.selected")) other.classList.remove("selected");
  card.classList.add("selected");
  state.units.selected = channel;
  showFiles(channel);
  await Promise.all([projectUnit(), optimizeUnit(state.units.layer, channel.channel)]);
}

function fileName(unit) {
  return unit.source === null ? unit.image : unit.source;
}

function showFiles(channel) {
  $("unit-files").replaceChildren(...channel.units.map((u) => element("li", {
    textContent: `${fileName(u)}${u.class === null ? "" : ` (${u.class})`}: ${u.value.toFixed(3)} at (${u.y}, ${u.x})`,
  })));
}

// The optimised image of a card: the first request starts it on the server, later ones read its progress.
async function optimizeUnit(layer, channel) {
  const current = ticket("optimize");
  const img = $("unit-optimized-image"), bar = $("unit-optimized-bar"), caption = $("unit-optimized-caption");
  img.hidden = true;
  for (;;) {
    const response = await fetch("/api/optimize", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ layer, channel }),
    });
    const data = await response.json();
    if (!current()) return;
    if (response.status === 503) {
      const wait = Number(response.headers.get("Retry-After") || 2);
      caption.textContent = `optimised image: the server is busy, trying again in ${wait} s`;
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      continue;
    }
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    if (data.state === "error") throw new Error(`optimised image: ${data.error}`);
    if (data.state === "done") {
      bar.hidden = true;
      img.src = data.image;
      img.hidden = false;
      const ratio = data.ratio === null ? "" : ` (${data.ratio.toFixed(2)}×)`;
      caption.textContent = `optimised image: activation ${data.activation.toFixed(3)} against the ` +
        `dataset's best ${data.dataset_max.toFixed(3)}${ratio}, ${data.steps} steps`;
      const card = document.querySelector(`.card[data-channel="${channel}"]`);
      if (card && !card.querySelector("img.optimized") && layer === state.units.layer) {
        card.insertBefore(element("img", { src: data.image, className: "optimized", alt: "optimised" }), card.lastChild);
      }
      return;
    }
    bar.hidden = false;
    bar.max = data.total; bar.value = data.done;
    caption.textContent = `optimised image: ${data.state}, step ${data.done} of ${data.total}`;
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
}

async function projectUnit() {
  const channel = state.units.selected;
  if (!channel) return;
  const rule = checkedValue("units-rule");
  const units = channel.units.map((u) => ({ image: u.image, channel: channel.channel, y: u.y, x: u.x }));
  const current = ticket("unit");
  const randomized = $("units-randomized").checked;
  const data = await api("/api/project", { layer: state.units.layer, units, rule, crop: true, randomized });
  if (!current()) return;
  $("unit-title").textContent = `${data.layer}, channel ${channel.channel}: ${rule} projections of its top ` +
    `${units.length} units` + (randomized ? ", through randomised weights" : "");
  $("unit-projections").replaceChildren(...data.projections.map((p) =>
    element("img", { src: p.projection, className: "projection", title: `${p.image} (${p.y}, ${p.x}) = ${p.activation.toFixed(3)}` })));
  $("unit-patches").replaceChildren(...data.projections.map((p, i) =>
    element("img", { src: p.patch, className: "patch", title: fileName(channel.units[i]) })));
  $("unit-detail").hidden = false;
}

// ---- Live image -----------------------------------------------------------------------------------------

async function loadLive() {
  const image = $("live-image").value, layer = $("live-layer").value;
  const size = state.status.input_size;
  const current = ticket("live");
  state.live = { image, layer, unit: null };
  $("live-projection").removeAttribute("src");
  $("live-caption").textContent = "click a position on a feature map below";
  const data = await api("/api/activations", { image, layer });
  if (!current()) return;
  await drawImageWithBox($("live-canvas"), `/api/image.png?${query({ ref: image })}`, null, size);
  const [channels, h, w] = data.shape;
  const bytes = Uint8Array.from(atob(data.maps), (c) => c.charCodeAt(0));
  const order = [...Array(channels).keys()].sort((a, b) => data.channel_max[b] - data.channel_max[a]);
  $("live-maps").replaceChildren(...order.map((c) => {
    const canvas = element("canvas", { width: w, height: h });
    const rows = Array.from({ length: h }, (_, y) => Array.from(bytes.subarray((c * h + y) * w, (c * h + y + 1) * w)));
    drawGrid(canvas, rows, (v) => [v, v, v]);
    canvas.addEventListener("click", (event) => {
      const rect = canvas.getBoundingClientRect();
      const y = Math.min(h - 1, Math.floor((event.clientY - rect.top) / rect.height * h));
      const x = Math.min(w - 1, Math.floor((event.clientX - rect.left) / rect.width * w));
      liveProject(c, y, x, canvas.parentElement).catch(showError);
    });
    const box = element("div", { className: "map", title: `channel ${c}, max ${data.channel_max[c].toFixed(2)}` },
      [canvas, element("span", { textContent: `${c}` })]);
    box.dataset.channel = c;
    return box;
  }));
  Object.assign($("live-maps").dataset, { image, layer });
}

async function liveProject(channel, y, x, box) {
  for (const other of document.querySelectorAll(".map.selected")) other.classList.remove("selected");
  if (box) box.classList.add("selected");
  state.live.unit = { channel, y, x };
  const { image, layer } = state.live;
  const rule = checkedValue("live-rule");
  const current = ticket("live-unit");
  const data = await api("/api/project", { layer, rule, units: [{ image, channel, y, x }] });
  if (!current()) return;
  const p = data.projections[0];
  $("live-projection").src = p.projection;
  $("live-caption").textContent = `${layer} channel ${channel} at (${y}, ${x}): activation ` +
    `${p.activation.toFixed(3)}, receptive field rows ${p.box[0]}–${p.box[1] - 1}, columns ${p.box[2]}–${p.box[3] - 1}` +
    (p.activation <= 0 ? " (not active: at most 0 before the ReLU)" : "") +
    (p.blank ? " (the projection is zero)" : "");
  await drawImageWithBox($("live-canvas"), `/api/image.png?${query({ ref: image })}`, p.box, state.status.input_size);
}

async function uploadImage(file) {
  const response = await fetch("/api/upload", { method: "POST", body: file });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error);
  await refreshImages(data.image);
  $("live-image").value = data.image;
  await loadLive();
}

// ---- Occlusion ----------------------------------------------------------------------------------------------

async function occlusion() {
  const image = $("occ-image").value;
  const window = Number($("occ-window").value), stride = Number($("occ-stride").value);
  $("occ-window-value").textContent = window; $("occ-stride-value").textContent = stride;
  const current = ticket("occlusion");
  const data = await api("/api/occlusion", { image, window, stride });
  if (!current()) return;
  const size = state.status.input_size;
  await drawImageWithBox($("occ-input"), `/api/image.png?${query({ ref: image })}`, [0, window, 0, window], size);
  const [lo, hi] = range(data.activation);
  drawGrid($("occ-activation"), data.activation, (v) => viridis(hi > lo ? (v - lo) / (hi - lo) : 0));
  const [plo, phi] = range(data.probability);
  drawGrid($("occ-probability"), data.probability, (v) => viridis(phi > plo ? (v - plo) / (phi - plo) : 0));
  drawGrid($("occ-label"), data.label, (v) => hexColour(CATEGORIES[v % CATEGORIES.length]));
  await drawImageWithBox($("occ-projection"), data.projection, data.box, size);
  const cls = data.classes[data.target];
  $("occ-probability-caption").textContent = `(d) probability of "${cls}"` +
    (data.target_is_true_label ? " (true label)" : " (unoccluded prediction)");
  $("occ-summary").textContent = `${data.positions_y.length}×${data.positions_x.length} occluder positions. ` +
    `Map: ${data.layer} channel ${data.channel}. Unoccluded: P("${cls}") = ${data.unoccluded.probability.toFixed(3)}, ` +
    `prediction "${data.classes[data.unoccluded.prediction]}". Colour scales (dark to bright): activation ` +
    `${lo.toFixed(1)}–${hi.toFixed(1)}, probability ${plo.toFixed(3)}–${phi.toFixed(3)}.`;
  const shown = [...new Set(data.label.flat())].sort((a, b) => a - b);
  $("occ-legend").replaceChildren(...shown.map((c) => element("span", {}, [
    element("span", { className: "swatch" }), data.classes[c]])));
  $("occ-legend").querySelectorAll(".swatch").forEach((s, i) => {
    s.style.background = CATEGORIES[shown[i] % CATEGORIES.length];
  });
}

// ---- Arithmetic ------------------------------------------------------------------------------------------------

function arithmeticParams() {
  const params = {};
  for (const input of document.querySelectorAll("#arith-controls input[type=range]")) {
    params[input.dataset.param] = input.value;
    input.nextElementSibling.textContent = input.value;
  }
  params.transposed = $("arith-transposed").checked;
  const outputPadding = document.querySelector('#arith-controls input[data-param="output_padding"]');
  outputPadding.disabled = !params.transposed;
  if (!params.transposed) params.output_padding = "0";
  return params;
}

async function arithmetic() {
  const params = arithmeticParams();
  const current = ticket("arithmetic");
  let data;
  try {
    data = await api(`/api/arithmetic?${query(params)}`);
    if (!current()) return;
  } catch (error) {
    if (!current()) return;
    $("arith-error").textContent = error.message;
    $("arith-error").hidden = false;
    $("arith-result").hidden = true;
    return;
  }
  $("arith-error").hidden = true;
  $("arith-result").hidden = false;
  const kind = data.transposed ? "transposed convolution" : "convolution";
  $("arith-shape").textContent = `${kind}: input ${data.input_size}×${data.input_size} → output ` +
    `${data.output_size}×${data.output_size}`;
  $("arith-formula").textContent = data.formula;
  $("arith-pytorch").textContent = data.pytorch;
  $("arith-functional").textContent = data.pytorch_functional;
  $("arith-direct").textContent = data.direct ? `Equivalent direct convolution: ${data.direct.text}.` : "";
  const channels = { in_channels: $("arith-in-channels").value, out_channels: $("arith-out-channels").value,
    groups: $("arith-groups").value };
  $("arith-animation").src =
    `/api/arithmetic/animation?${query({ ...params, ...channels, view: $("arith-view").value })}`;
  drawMatrix(data.matrix, Number(params.kernel));
}

function tapColour(tap, taps) {
  if (tap === 0) return [255, 255, 255];
  const hue = (tap - 1) / taps;
  const c = document.createElement("canvas").getContext("2d");
  c.fillStyle = `hsl(${Math.round(hue * 330)}, 70%, 55%)`;
  return hexColour(c.fillStyle);
}

function drawMatrix(matrix, kernel) {
  const canvas = $("arith-matrix");
  const caption = `${matrix.name}: ${matrix.rows} rows (output cells) × ${matrix.cols} columns (input cells)`;
  if (!matrix.taps) {
    canvas.hidden = true;
    $("arith-matrix-caption").textContent = `${caption}, too large to draw`;
    $("arith-legend").replaceChildren();
    return;
  }
  canvas.hidden = false;
  const taps = kernel * kernel;
  const colours = [...Array(taps + 1).keys()].map((t) => tapColour(t, taps));
  drawGrid(canvas, matrix.taps, (t) => colours[t]);
  const scale = Math.max(2, Math.floor(480 / Math.max(matrix.rows, matrix.cols)));
  canvas.style.width = `${matrix.cols * scale}px`;
  canvas.style.height = `${matrix.rows * scale}px`;
  $("arith-matrix-caption").textContent = `${caption}; each entry coloured by the kernel weight it holds`;
  $("arith-legend").replaceChildren(...colours.slice(1).map((_, t) => element("span", {}, [
    element("span", { className: "swatch" }), `w[${Math.floor(t / kernel)},${t % kernel}]`])));
  $("arith-legend").querySelectorAll(".swatch").forEach((s, t) => {
    s.style.background = `rgb(${colours[t + 1].join(",")})`;
  });
}

// ---- wiring --------------------------------------------------------------------------------------------------------

function wire() {
  window.addEventListener("hashchange", () => showPage(currentPage()));
  $("units-layer").addEventListener("change", () => loadUnits().catch(showError));
  for (const radio of document.getElementsByName("units-rule")) {
    radio.addEventListener("change", () => projectUnit().catch(showError));
  }
  $("units-randomized").addEventListener("change", () => projectUnit().catch(showError));
  for (const radio of document.getElementsByName("live-rule")) {
    radio.addEventListener("change", () => {
      const unit = state.live.unit;
      if (unit) liveProject(unit.channel, unit.y, unit.x, document.querySelector(".map.selected")).catch(showError);
    });
  }
  for (const id of ["live-image", "live-layer"]) $(id).addEventListener("change", () => loadLive().catch(showError));
  $("live-upload").addEventListener("change", (event) => {
    if (event.target.files.length) uploadImage(event.target.files[0]).catch(showError);
  });
  const rerunOcclusion = debounce(() => occlusion().catch(showError), 250);
  for (const id of ["occ-image", "occ-window", "occ-stride"]) $(id).addEventListener("input", rerunOcclusion);
  const rerunArithmetic = debounce(arithmetic, 150);
  for (const input of document.querySelectorAll("#arith-controls input, #arith-controls select")) {
    input.addEventListener("input", rerunArithmetic);
  }
  showPage(currentPage());
  pollStatus().catch(showError);
}

document.addEventListener("DOMContentLoaded", wire);
