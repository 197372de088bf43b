// The fast_style page: one photo, one style at a time, through POST /api/stylize on this server.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  photo: null,        // the chosen file (a Blob)
  photoName: "photo",
  width: 0,           // the photo's size as the browser sees it (0 when it cannot preview it)
  height: 0,
  limits: null,
  rates: {},          // model name -> seconds per megapixel, from the server
  styles: {},         // model name -> its style names (multi-style models only)
  controller: null,   // aborts the request in flight when a newer one starts
  resultUrl: null,
  beforeUrl: null,
  timer: null,
};

function setStatus(text, busy = false, fraction = null) {
  $("status-text").textContent = text;
  $("status").classList.toggle("busy", busy);
  $("bar").classList.toggle("unknown", busy && fraction === null);
  $("bar-fill").style.width = fraction === null ? "" : `${Math.round(fraction * 100)}%`;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function megabytes(bytes) {
  return `${Math.round(bytes / 2 ** 20)} MB`;
}

function selectedModel() {
  const checked = document.querySelector('input[name="model"]:checked');
  return checked ? checked.value : null;
}

// A multi-style model's choice: its style, or a blend of two of them ("a=0.3,b=0.7").
function showStyles(model) {
  const styles = state.styles[model] || [];
  $("multi-group").hidden = styles.length < 2;
  ["style-a", "style-b"].forEach((id, which) => {
    const select = $(id);
    select.textContent = "";
    styles.forEach((name, index) => {
      const option = document.createElement("option");
      Object.assign(option, { value: name, textContent: name, selected: index === which });
      select.append(option);
    });
  });
}

function styleChoice() {
  if ($("multi-group").hidden) return {};
  const a = $("style-a").value;
  if (!$("mix").checked) return { style: a };
  const w = Number($("mix-weight").value) / 100;
  return { mix: `${a}=${(1 - w).toFixed(2)},${$("style-b").value}=${w.toFixed(2)}` };
}

// Refine steps asked for: 0 unless the server refines and the box is ticked.
function refineSteps() {
  return !$("refine-group").hidden && $("refine").checked ? Number($("refine-steps").value) : 0;
}

// The result's size: the photo scaled down so its longer side is at most the chosen size.
function outputSize() {
  let side = Number($("size").value);
  if (refineSteps() && state.limits) side = Math.min(side, state.limits.max_refine_side);
  const long = Math.max(state.width, state.height);
  if (!long) return null;
  const scale = Math.min(1, side / long);
  return [Math.max(1, Math.round(state.width * scale)), Math.max(1, Math.round(state.height * scale))];
}

async function loadModels() {
  let info;
  try {
    const response = await fetch("/api/models");
    info = await response.json();
  } catch (err) {
    setStatus("");
    showError("Could not reach the server. Is fast-style serve still running?");
    return;
  }
  state.limits = info.limits;
  const styles = $("styles");
  styles.textContent = "";
  info.models.forEach((model, index) => {
    state.rates[model.name] = model.seconds_per_megapixel;
    state.styles[model.name] = model.styles || [];
    const label = document.createElement("label");
    label.className = "style";
    const input = document.createElement("input");
    Object.assign(input, { type: "radio", name: "model", value: model.name, checked: index === 0 });
    input.addEventListener("change", () => { showStyles(model.name); run(); });
    const name = document.createElement("span");
    name.textContent = model.name;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = model.arch === "fast" ? "fast network" : model.arch;
    label.append(input, name, meta);
    styles.append(label);
  });
  if (info.models.length) showStyles(info.models[0].name);
  const limits = info.limits;
  $("size").max = limits.max_side;
  $("size").value = limits.default_side;
  $("size-value").textContent = `${limits.default_side} px`;
  const kinds = limits.formats.join(", ");
  $("limits").textContent =
    `${kinds}; up to ${megabytes(limits.max_upload_bytes)} and ` +
    `${limits.max_pixels / 1e6} megapixels. Results are at most ${limits.max_side} px on the longer side.`;
  // Refine is offered only by a server started with the loss network's weights (info.refine.reason says why not).
  $("refine-group").hidden = !(info.refine && info.refine.available);
  $("refine-steps").max = limits.max_refine_steps;
  $("refine-side").textContent = limits.max_refine_side;
  $("demo").hidden = !info.demo;
  $("demo").dataset.url = info.demo || "";
}

function setPhoto(blob, name) {
  showError("");
  if (state.limits && blob.size > state.limits.max_upload_bytes) {
    showError(`${name} is ${(blob.size / 2 ** 20).toFixed(1)} MB; the limit is ${megabytes(state.limits.max_upload_bytes)}.`);
    return;
  }
  state.photo = blob;
  state.photoName = name;
  state.width = state.height = 0;
  if (state.beforeUrl) URL.revokeObjectURL(state.beforeUrl);
  state.beforeUrl = URL.createObjectURL(blob);
  $("empty").hidden = true;
  $("compare").hidden = false;
  $("after").hidden = $("divider").hidden = $("split").hidden = $("tag-after").hidden = true;
  $("download").hidden = true;
  $("run").disabled = false;
  $("photo-info").textContent = name;
  const before = $("before");
  // Stylize once the browser knows the photo's size (for the estimate), or knows it cannot show it.
  before.onload = () => {
    state.width = before.naturalWidth;
    state.height = before.naturalHeight;
    $("photo-info").textContent = `${name} · ${state.width}×${state.height}`;
    run();
  };
  before.onerror = () => {
    $("photo-info").textContent = `${name} · this browser cannot preview it; the server may still read it`;
    run();
  };
  before.src = state.beforeUrl;
}

function startProgress(model) {
  const started = performance.now();
  const size = outputSize();
  const rate = state.rates[model];
  const steps = refineSteps();
  // No estimate for refine yet: its steps cost far more than the network.
  const estimate = size && rate && !steps ? (rate * size[0] * size[1]) / 1e6 : null;
  const what = (size ? `${size[0]}×${size[1]} px` : "the photo") + (steps ? ` + ${steps} refine steps` : "");
  const tick = () => {
    const elapsed = (performance.now() - started) / 1000;
    if (estimate) {
      const fraction = Math.min(0.95, elapsed / Math.max(estimate, 0.05));
      setStatus(`Stylizing ${what} with ${model}… ${elapsed.toFixed(1)} s of about ${Math.max(estimate, 0.1).toFixed(1)} s`, true, fraction);
    } else {
      setStatus(`Stylizing ${what} with ${model}… ${elapsed.toFixed(1)} s (the first run of a style also loads it)`, true);
    }
  };
  clearInterval(state.timer);
  tick();
  state.timer = setInterval(tick, 200);
}

function stopProgress() {
  clearInterval(state.timer);
  state.timer = null;
}

async function run() {
  const model = selectedModel();
  if (!state.photo || !model) return;
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  showError("");
  const form = new FormData();
  form.append("image", state.photo, state.photoName);
  form.append("model", model);
  form.append("strength", String(Number($("strength").value) / 100));
  form.append("preserve_color", $("preserve").checked ? "true" : "false");
  form.append("max_size", $("size").value);
  if (refineSteps()) form.append("refine", String(refineSteps()));
  Object.entries(styleChoice()).forEach(([key, value]) => form.append(key, value));
  startProgress(model);
  $("run").disabled = true;
  $("compare").classList.add("stale");
  try {
    const response = await fetch("/api/stylize", { method: "POST", body: form, signal: controller.signal });
    if (!response.ok) {
      let message = `The server answered ${response.status}.`;
      try {
        message = (await response.json()).error || message;
      } catch (err) { /* not JSON: keep the status line */ }
      throw new Error(message);
    }
    const blob = await response.blob();
    const rate = Number(response.headers.get("x-seconds-per-megapixel"));
    if (rate) state.rates[model] = rate;
    showResult(blob, model, response.headers);
  } catch (err) {
    if (controller.signal.aborted) return;  // a newer request replaced this one
    stopProgress();
    setStatus("");
    showError(err instanceof TypeError ? "Could not reach the server. Is fast-style serve still running?" : err.message);
  } finally {
    if (state.controller === controller) {
      state.controller = null;
      $("compare").classList.remove("stale");
      $("run").disabled = !state.photo;
    }
  }
}

function showResult(blob, model, headers) {
  stopProgress();
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = URL.createObjectURL(blob);
  const after = $("after");
  after.src = state.resultUrl;
  after.hidden = $("divider").hidden = $("split").hidden = $("tag-after").hidden = false;
  const stem = state.photoName.replace(/\.[^.]*$/, "") || "photo";
  const link = $("download");
  link.href = state.resultUrl;
  link.download = `${stem}_${model}.png`;
  link.hidden = false;
  const size = (headers.get("x-image-size") || "").replace("x", "×");
  const seconds = Number(headers.get("x-total-seconds") || 0).toFixed(1);
  setStatus(`Done: ${size} px with ${model} in ${seconds} s. Drag across the image to compare.`);
}

function setSplit(value) {
  $("compare").style.setProperty("--split", `${value}%`);
}

function init() {
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) setPhoto(file, file.name);
  });
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((kind) => drop.addEventListener(kind, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((kind) => drop.addEventListener(kind, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) setPhoto(file, file.name);
  });
  $("demo").addEventListener("click", async () => {
    try {
      const response = await fetch($("demo").dataset.url);
      if (!response.ok) throw new Error();
      setPhoto(await response.blob(), "astronaut.jpg");
    } catch (err) {
      showError("Could not load the demo photo.");
    }
  });
  $("strength").addEventListener("input", () => { $("strength-value").textContent = `${$("strength").value}%`; });
  $("size").addEventListener("input", () => { $("size-value").textContent = `${$("size").value} px`; });
  $("refine-steps").addEventListener("input", () => { $("refine-steps-value").textContent = $("refine-steps").value; });
  ["strength", "size", "preserve", "refine"].forEach((id) => $(id).addEventListener("change", () => run()));
  $("refine-steps").addEventListener("change", () => { if ($("refine").checked) run(); });
  $("mix-weight").addEventListener("input", () => { $("mix-value").textContent = `${$("mix-weight").value}%`; });
  $("mix").addEventListener("change", () => {
    $("style-b").disabled = $("mix-weight").disabled = !$("mix").checked;
    run();
  });
  ["style-a", "style-b", "mix-weight"].forEach((id) => $(id).addEventListener("change", () => run()));
  $("run").addEventListener("click", () => run());
  $("split").addEventListener("input", () => setSplit($("split").value));
  setSplit($("split").value);
  loadModels();
}

document.addEventListener("DOMContentLoaded", init);
