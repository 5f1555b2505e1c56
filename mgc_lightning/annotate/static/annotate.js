// mgc annotate: one window at a time; the mask lives here as one byte per image pixel (row 0 = highest frequency)
// and goes to the server only on accept.
"use strict";

const MARGIN = { left: 60, right: 24, top: 10, bottom: 42 };
const ZOOMS = [2, 3, 4, 5, 6, 8, 10];
const OVERLAY_RGB = [0, 229, 255];

const $ = (id) => document.getElementById(id);
const canvas = $("view");
const context = canvas.getContext("2d");
const overlay = document.createElement("canvas");
const audio = new Audio();

const state = {
  session: null, index: 0, window: null, image: null, mask: null, undo: [], redo: [],
  tool: "brush", zoom: 4, stroke: null, box: null, cursorS: null, slowdown: 10,
};

// ---- server ----------------------------------------------------------------------------------------------------

async function api(path, options) {
  const response = await fetch(path, options);
  if (!response.ok) {
    const detail = await response.json().catch(() => ({}));
    throw new Error(detail.detail || `${response.status} ${response.statusText}`);
  }
  return response.json();
}

const textToMask = (text) => Uint8Array.from(text, (c) => (c === "1" ? 1 : 0));
const maskToText = (mask) => Array.from(mask, (v) => (v ? "1" : "0")).join("");

function status(message) { $("status").textContent = message; }

function updateCounter(accepted, total) {
  state.session.accepted = accepted;
  $("counter").textContent = `${accepted} / ${total} accepted`;
}

async function load(index) {
  const session = state.session;
  index = Math.max(0, Math.min(session.total - 1, index));
  stopPlayback();
  document.body.dataset.window = "";
  let win, image;
  try {
    win = await api(`/api/windows/${index}`);
    image = new Image();
    image.src = `/api/windows/${index}/spectrogram.png`;
    await image.decode();
  } catch (error) {
    // Nothing to edit or accept here; the keys still move on to the other windows.
    Object.assign(state, { index, window: null, image: null, mask: null, undo: [], redo: [] });
    context.clearRect(0, 0, canvas.width, canvas.height);
    $("info").textContent = `window ${index + 1} of ${session.total}`;
    status(`cannot show window ${index + 1}: ${error.message}`);
    return;
  }
  Object.assign(state, { index, window: win, image, mask: textToMask(win.mask), undo: [], redo: [] });
  session.sound_types.forEach((name, i) => { $(`label-${name}`).checked = win.labels[i] === 1; });
  const end = win.start_s + win.duration_s;
  let info = `window ${index + 1} of ${session.total} · ${win.recording} · ${win.file} ` +
    `${win.start_s.toFixed(3)}–${end.toFixed(3)} s · mask: ${win.mask_origin}`;
  if (win.accepted_by) info += ` (by ${win.accepted_by}, ${win.accepted_at})`;
  $("info").textContent = info;
  draw();
  document.body.dataset.window = String(index);
}

async function accept() {
  if (!state.window) return;
  const labels = state.session.sound_types.map((name) => ($(`label-${name}`).checked ? 1 : 0));
  try {
    const result = await api(`/api/windows/${state.index}/accept`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ mask: maskToText(state.mask), labels, base_version: state.window.version }),
    });
    updateCounter(result.accepted, result.total);
    status(`saved window ${state.index + 1}`);
    if (state.index + 1 < state.session.total) await load(state.index + 1);
    else status(`saved window ${state.index + 1}: the end of the queue`);
  } catch (error) {
    status(`not saved: ${error.message}`);
  }
}

async function recomputeCandidate() {
  if (!state.window) return;
  const sensitivity = $("sensitivity").value;
  const result = await api(`/api/windows/${state.index}/candidate?sensitivity=${sensitivity}`);
  edit(() => state.mask.set(textToMask(result.mask)));
  status(`candidate mask at sensitivity ${Number(sensitivity).toFixed(2)}`);
}

// ---- editing ---------------------------------------------------------------------------------------------------

function edit(change) {
  if (!state.mask) return;
  state.undo.push(state.mask.slice());
  state.redo = [];
  change();
  draw();
}

function undo() {
  if (!state.undo.length) return;
  state.redo.push(state.mask);
  state.mask = state.undo.pop();
  draw();
}

function redo() {
  if (!state.redo.length) return;
  state.undo.push(state.mask);
  state.mask = state.redo.pop();
  draw();
}

// A disc of radius `size` pixels (size 0: one pixel) around (column, row), clipped to the image.
function paintDisc(column, row, value) {
  const { width, height } = state.session;
  const radius = Number($("size").value);
  for (let dy = -radius; dy <= radius; dy++) {
    for (let dx = -radius; dx <= radius; dx++) {
      const c = column + dx, r = row + dy;
      if (dx * dx + dy * dy <= radius * radius && c >= 0 && c < width && r >= 0 && r < height) {
        state.mask[r * width + c] = value;
      }
    }
  }
}

function paintLine(from, to, value) {
  const steps = Math.max(Math.abs(to.c - from.c), Math.abs(to.r - from.r));
  for (let i = 0; i <= steps; i++) {
    const t = steps ? i / steps : 0;
    paintDisc(Math.round(from.c + (to.c - from.c) * t), Math.round(from.r + (to.r - from.r) * t), value);
  }
}

function fillBox(a, b) {
  const { width, height } = state.session;
  const clamp = (v, n) => Math.max(0, Math.min(n - 1, v));
  const [c0, c1] = [clamp(Math.min(a.c, b.c), width), clamp(Math.max(a.c, b.c), width)];
  const [r0, r1] = [clamp(Math.min(a.r, b.r), height), clamp(Math.max(a.r, b.r), height)];
  for (let r = r0; r <= r1; r++) state.mask.fill(1, r * width + c0, r * width + c1 + 1);
}

function gridAt(event) {
  const rect = canvas.getBoundingClientRect();
  return {
    c: Math.floor((event.clientX - rect.left - MARGIN.left) / state.zoom),
    r: Math.floor((event.clientY - rect.top - MARGIN.top) / state.zoom),
  };
}

// Where the centre of image pixel (column, row) is on the screen: used by the browser tests to aim real mouse moves.
function gridToClient(column, row) {
  const rect = canvas.getBoundingClientRect();
  return {
    x: rect.left + MARGIN.left + (column + 0.5) * state.zoom,
    y: rect.top + MARGIN.top + (row + 0.5) * state.zoom,
  };
}

function insidePlot(p) { return p.c >= 0 && p.c < state.session.width && p.r >= 0 && p.r < state.session.height; }

canvas.addEventListener("mousedown", (event) => {
  const p = gridAt(event);
  if (event.button !== 0 || !state.mask || !insidePlot(p)) return;
  event.preventDefault();
  if (state.tool === "box") {
    state.box = { from: p, to: p };
  } else {
    const value = state.tool === "brush" ? 1 : 0;
    edit(() => paintDisc(p.c, p.r, value));
    state.stroke = { last: p, value };
  }
  draw();
});

window.addEventListener("mousemove", (event) => {
  if (state.stroke) {
    const p = gridAt(event);
    paintLine(state.stroke.last, p, state.stroke.value);
    state.stroke.last = p;
    draw();
  } else if (state.box) {
    state.box.to = gridAt(event);
    draw();
  }
});

window.addEventListener("mouseup", () => {
  if (state.box) {
    const { from, to } = state.box;
    state.box = null;
    edit(() => fillBox(from, to));
  }
  state.stroke = null;
});

// ---- drawing ---------------------------------------------------------------------------------------------------

function niceStep(span, most) {
  for (const base of [1e-3, 1e-2, 1e-1, 1, 10]) {
    for (const m of [1, 2, 5]) if (span / (base * m) <= most) return base * m;
  }
  return span;
}

function drawAxes(plotWidth, plotHeight) {
  const { height, row_frequencies_khz: rows } = state.session;
  const duration = state.window.duration_s;
  context.fillStyle = "#d0d4dc";
  context.strokeStyle = "#8a90a0";
  context.font = "12px system-ui, sans-serif";
  const x0 = MARGIN.left, y0 = MARGIN.top + plotHeight;
  context.textAlign = "center";
  context.textBaseline = "top";
  const step = niceStep(duration, 8);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  for (let t = 0; t <= duration + 1e-9; t += step) {
    const x = x0 + (t / duration) * plotWidth;
    context.beginPath(); context.moveTo(x, y0); context.lineTo(x, y0 + 5); context.stroke();
    context.fillText(t.toFixed(decimals), x, y0 + 7);
  }
  context.fillText("time (s)", x0 + plotWidth / 2, y0 + 24);
  context.textAlign = "right";
  context.textBaseline = "middle";
  const every = Math.max(1, Math.round(height / 8));
  for (let r = 0; r < height; r += every) {
    const y = MARGIN.top + (r + 0.5) * state.zoom;
    context.beginPath(); context.moveTo(x0 - 5, y); context.lineTo(x0, y); context.stroke();
    context.fillText(rows[r].toFixed(rows[r] < 10 ? 1 : 0), x0 - 7, y);
  }
  context.save();
  context.translate(14, MARGIN.top + plotHeight / 2);
  context.rotate(-Math.PI / 2);
  context.textAlign = "center";
  context.fillText("frequency (kHz)", 0, 0);
  context.restore();
}

function draw() {
  if (!state.window) return;
  const { width, height } = state.session;
  const plotWidth = width * state.zoom, plotHeight = height * state.zoom;
  const canvasWidth = MARGIN.left + plotWidth + MARGIN.right, canvasHeight = MARGIN.top + plotHeight + MARGIN.bottom;
  if (canvas.width !== canvasWidth || canvas.height !== canvasHeight) {
    canvas.width = canvasWidth;
    canvas.height = canvasHeight;
  }
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.imageSmoothingEnabled = false;
  context.drawImage(state.image, MARGIN.left, MARGIN.top, plotWidth, plotHeight);

  overlay.width = width;
  overlay.height = height;
  const pixels = new ImageData(width, height);
  state.mask.forEach((value, i) => {
    if (value) pixels.data.set([...OVERLAY_RGB, 255], i * 4);
  });
  overlay.getContext("2d").putImageData(pixels, 0, 0);
  context.globalAlpha = Number($("opacity").value);
  context.drawImage(overlay, MARGIN.left, MARGIN.top, plotWidth, plotHeight);
  context.globalAlpha = 1;

  if (state.box) {
    const { from, to } = state.box;
    context.strokeStyle = "#ffffff";
    context.strokeRect(MARGIN.left + Math.min(from.c, to.c) * state.zoom, MARGIN.top + Math.min(from.r, to.r) * state.zoom,
      (Math.abs(to.c - from.c) + 1) * state.zoom, (Math.abs(to.r - from.r) + 1) * state.zoom);
  }
  if (state.cursorS !== null) {
    const x = MARGIN.left + (state.cursorS / state.window.duration_s) * plotWidth;
    context.strokeStyle = "#ffdd33";
    context.lineWidth = 2;
    context.beginPath(); context.moveTo(x, MARGIN.top); context.lineTo(x, MARGIN.top + plotHeight); context.stroke();
    context.lineWidth = 1;
  }
  drawAxes(plotWidth, plotHeight);
}

// ---- playback --------------------------------------------------------------------------------------------------

function stopPlayback() {
  audio.pause();
  state.cursorS = null;
  $("play").textContent = "Play";
  document.body.dataset.playing = "";
  draw();
}

function followCursor() {
  if (audio.paused) return;
  state.cursorS = Math.min(audio.currentTime / state.slowdown, state.window.duration_s);
  document.body.dataset.cursor = state.cursorS.toFixed(4);
  draw();
  requestAnimationFrame(followCursor);
}

async function togglePlayback() {
  if (!audio.paused) return stopPlayback();
  if (!state.window) return;
  state.slowdown = Number($("slowdown").value);
  audio.src = `/api/windows/${state.index}/audio.wav?slowdown=${state.slowdown}`;
  try {
    await audio.play();
  } catch (error) {
    return status(`cannot play: ${error.message}`);
  }
  $("play").textContent = "Stop";
  document.body.dataset.playing = "1";
  requestAnimationFrame(followCursor);
}

audio.addEventListener("ended", stopPlayback);

// ---- controls --------------------------------------------------------------------------------------------------

function setTool(tool) {
  state.tool = tool;
  document.querySelectorAll("[data-tool]").forEach((b) => b.classList.toggle("active", b.dataset.tool === tool));
}

function zoomBy(direction) {
  const position = ZOOMS.indexOf(state.zoom) + direction;
  state.zoom = ZOOMS[Math.max(0, Math.min(ZOOMS.length - 1, position))];
  draw();
}

function nudgeSize(direction) {
  const size = $("size");
  size.value = Number(size.value) + direction;
  $("size-value").textContent = size.value;
}

function toggleLabel(position) {
  const box = $(`label-${state.session.sound_types[position]}`);
  if (box) box.checked = !box.checked;
}

function bindControls() {
  document.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("clear").addEventListener("click", () => edit(() => state.mask.fill(0)));
  $("zoom-in").addEventListener("click", () => zoomBy(1));
  $("zoom-out").addEventListener("click", () => zoomBy(-1));
  $("play").addEventListener("click", togglePlayback);
  $("accept").addEventListener("click", accept);
  $("skip").addEventListener("click", () => load(state.index + 1));
  $("previous").addEventListener("click", () => load(state.index - 1));
  $("size").addEventListener("input", () => { $("size-value").textContent = $("size").value; });
  $("opacity").addEventListener("input", () => { $("opacity-value").textContent = Number($("opacity").value).toFixed(2); draw(); });
  $("sensitivity").addEventListener("input", () => {
    $("sensitivity-value").textContent = Number($("sensitivity").value).toFixed(2);
  });
  $("sensitivity").addEventListener("change", recomputeCandidate);
  // Keys belong to the page, not to whichever control was clicked last.
  document.querySelectorAll("button, input, select").forEach((element) => {
    element.addEventListener(element.tagName === "BUTTON" ? "click" : "change", () => element.blur());
  });
}

const KEYS = {
  a: accept, Enter: accept, s: () => load(state.index + 1), ArrowRight: () => load(state.index + 1),
  p: () => load(state.index - 1), ArrowLeft: () => load(state.index - 1),
  b: () => setTool("brush"), e: () => setTool("eraser"), r: () => setTool("box"),
  z: undo, y: redo, c: () => edit(() => state.mask.fill(0)), " ": togglePlayback,
  "+": () => zoomBy(1), "=": () => zoomBy(1), "-": () => zoomBy(-1), "[": () => nudgeSize(-1), "]": () => nudgeSize(1),
  1: () => toggleLabel(0), 2: () => toggleLabel(1), 3: () => toggleLabel(2),
};

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.metaKey || !state.session) return;
  let key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (event.ctrlKey) {
    if (key !== "z" && key !== "y") return;
    if (key === "z" && event.shiftKey) key = "y";  // Ctrl+Shift+Z redoes, as in most editors
  }
  const action = KEYS[key];
  if (!action) return;
  event.preventDefault();
  action();
});

async function start() {
  const session = await api("/api/session");
  state.session = session;
  $("labels").innerHTML = session.sound_types.map((name, i) =>
    `<label><input type="checkbox" id="label-${name}"> ${name.replace("_", " ")} <small>(${i + 1})</small></label>`,
  ).join("");
  $("sensitivity").value = session.sensitivity;
  $("sensitivity-value").textContent = Number(session.sensitivity).toFixed(2);
  bindControls();
  setTool("brush");
  updateCounter(session.accepted, session.total);
  document.title = `mgc annotate · ${session.manifest} · ${session.preset}`;
  await load(session.resume);
}

window.annotator = { state, gridToClient };
start().catch((error) => status(`cannot start: ${error.message}`));
