// mgc annotate: one window at a time; the mask lives here as one byte per image pixel (row 0 = highest frequency).
// Edits stay with their window (and in this tab's sessionStorage, so a reload keeps them) until they are accepted or
// discarded; a save names the saved version it started from, so it never replaces another tab's save unasked.
"use strict";

const ZOOMS = [2, 3, 4, 5, 6, 8, 10];
const OVERLAY_RGB = [0, 229, 255];
const FREQUENCY_AXIS_WIDTH = 60, TIME_AXIS_HEIGHT = 42;

const $ = (id) => document.getElementById(id);
const canvas = $("view");
const context = canvas.getContext("2d");
const overlay = document.createElement("canvas");
const audio = new Audio();

const state = {
  session: null, index: 0, window: null, image: null,
  // The shown mask, the candidate sensitivity it comes from (null: no candidate, e.g. a saved or cleared mask) and
  // the saved version the edits started from; undo / redo entries hold a mask and its sensitivity.
  mask: null, sensitivity: null, base: 0, undo: [], redo: [],
  histories: new Map(), // undo / redo of the windows with unsaved edits, by window key
  tool: "brush", zoom: 4, stroke: null, box: null, cursorS: null, slowdown: 10,
  candidateRequest: 0, candidatePending: 0, conflictVersion: null,
};
const drafts = new Map(); // window key -> {mask, labels, sensitivity, base}: the edits not yet accepted

// ---- server ----------------------------------------------------------------------------------------------------

async function api(path, options) {
  const response = await fetch(path, options);
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = new Error(body.detail || `${response.status} ${response.statusText}`);
    throw Object.assign(error, { status: response.status, body });
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

// ---- unsaved edits ---------------------------------------------------------------------------------------------

// sessionStorage belongs to this tab: another tab keeps its own edits, and learns of this one's only on saving.
const draftPrefix = () => `mgc-annotate|${state.session.record}|`;

function restoreDrafts() {
  for (const name of Object.keys(sessionStorage)) {
    if (name.startsWith(draftPrefix())) drafts.set(name.slice(draftPrefix().length), JSON.parse(sessionStorage[name]));
  }
}

function dropDraft(key) {
  drafts.delete(key);
  state.histories.delete(key);
  sessionStorage.removeItem(draftPrefix() + key);
  showUnsaved();
}

function currentLabels() {
  return state.session.sound_types.map((name) => ($(`label-${name}`).checked ? 1 : 0));
}

// After every edit: the shown window's edits become its draft, or none when they lead back to the saved mask.
function keepEdits() {
  const win = state.window;
  if (!win) return;
  const mask = maskToText(state.mask), labels = currentLabels();
  if (mask === win.mask && labels.join() === win.labels.join()) {
    dropDraft(win.key);
  } else {
    const draft = { mask, labels, sensitivity: state.sensitivity, base: state.base };
    drafts.set(win.key, draft);
    state.histories.set(win.key, { undo: state.undo, redo: state.redo });
    try {
      sessionStorage.setItem(draftPrefix() + win.key, JSON.stringify(draft));
    } catch (error) {
      status(`edits kept in this page, but a reload would lose them (${error.message}): accept or discard some`);
    }
  }
  showUnsaved();
  showInfo();
}

function showUnsaved() {
  const count = drafts.size;
  $("unsaved").textContent = count ? `${count} window${count === 1 ? "" : "s"} with unsaved edits` : "";
}

window.addEventListener("beforeunload", (event) => {
  if (!drafts.size) return;
  event.preventDefault();
  event.returnValue = true; // what browsers before the standard need to ask
});

// ---- windows ---------------------------------------------------------------------------------------------------

function showInfo() {
  const { window: win, session } = state;
  if (!win) return;
  const end = win.start_s + win.duration_s;
  let info = `window ${state.index + 1} of ${session.total} · ${win.recording} · ${win.file} ` +
    `${win.start_s.toFixed(3)}–${end.toFixed(3)} s · mask: ${win.mask_origin}`;
  if (win.accepted_by) info += ` (by ${win.accepted_by}, ${win.accepted_at})`;
  if (drafts.has(win.key)) info += " · unsaved edits";
  $("info").textContent = info;
  $("discard").disabled = !drafts.has(win.key);
}

function showSensitivity() {
  $("sensitivity").value = state.sensitivity ?? state.session.sensitivity;
  $("sensitivity-value").textContent = state.sensitivity === null ? "—" : Number(state.sensitivity).toFixed(2);
}

async function load(index) {
  const session = state.session;
  index = Math.max(0, Math.min(session.total - 1, index));
  stopPlayback();
  $("conflict").hidden = true;
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
  const draft = drafts.get(win.key);
  const history = state.histories.get(win.key) || { undo: [], redo: [] };
  Object.assign(state, {
    index, window: win, image, mask: textToMask(draft ? draft.mask : win.mask), undo: history.undo, redo: history.redo,
    sensitivity: draft ? draft.sensitivity : win.sensitivity, base: draft ? draft.base : win.version,
  });
  const labels = draft ? draft.labels : win.labels;
  session.sound_types.forEach((name, i) => { $(`label-${name}`).checked = labels[i] === 1; });
  showSensitivity();
  showInfo();
  draw();
  document.body.dataset.window = String(index);
}

async function accept() {
  if (!state.window) return;
  const { index, window: win } = state;
  let result;
  try {
    result = await api(`/api/windows/${index}/accept`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ mask: maskToText(state.mask), labels: currentLabels(), base_version: state.base }),
    });
  } catch (error) {
    // The edits stay in their draft; a newer saved version is the annotator's call.
    if (error.status === 409 && state.window === win) {
      state.conflictVersion = error.body.version;
      $("conflict-message").textContent = `${error.message}.`;
      $("conflict").hidden = false;
    }
    status(`not saved: ${error.message}`);
    return;
  }
  dropDraft(win.key);
  updateCounter(result.accepted, result.total);
  if (state.window !== win) return status(`saved window ${index + 1}`);
  const last = index + 1 >= state.session.total;
  await load(last ? index : index + 1); // at the end, reloaded: the page then knows the version it just saved
  status(last ? `saved window ${index + 1}: the end of the queue` : `saved window ${index + 1}`);
}

async function overwrite() {
  state.base = state.conflictVersion;
  keepEdits();
  await accept();
}

async function discard() {
  if (!state.window) return;
  dropDraft(state.window.key);
  await load(state.index);
  status(`window ${state.index + 1}: the saved mask, without this tab's edits`);
}

async function recomputeCandidate() {
  if (!state.window) return showSensitivity();
  const value = Number($("sensitivity").value), win = state.window, request = ++state.candidateRequest;
  state.candidatePending = request;
  let result;
  try {
    result = await api(`/api/windows/${state.index}/candidate?sensitivity=${value}`);
  } catch (error) {
    status(`no candidate mask: ${error.message}`);
  }
  if (state.candidatePending === request) state.candidatePending = 0;
  // Only the last value asked for, and only on the window it was asked for.
  if (request !== state.candidateRequest || state.window !== win) return;
  if (!result) return showSensitivity();
  edit(() => state.mask.set(textToMask(result.mask)), value);
  status(`candidate mask at sensitivity ${value.toFixed(2)}`);
}

// ---- editing ---------------------------------------------------------------------------------------------------

function edit(change, sensitivity = state.sensitivity) {
  if (!state.mask) return;
  state.undo.push({ mask: state.mask.slice(), sensitivity: state.sensitivity });
  state.redo.length = 0;
  change();
  state.sensitivity = sensitivity;
  edited();
}

function edited() {
  showSensitivity();
  keepEdits();
  draw();
}

function step(from, to) {
  if (!from.length || !state.mask) return;
  to.push({ mask: state.mask, sensitivity: state.sensitivity });
  ({ mask: state.mask, sensitivity: state.sensitivity } = from.pop());
  edited();
}

const undo = () => step(state.undo, state.redo);
const redo = () => step(state.redo, state.undo);

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
    c: Math.floor((event.clientX - rect.left) / state.zoom),
    r: Math.floor((event.clientY - rect.top) / state.zoom),
  };
}

// Where the centre of image pixel (column, row) is on the screen: used by the browser tests to aim real mouse moves.
function gridToClient(column, row) {
  const rect = canvas.getBoundingClientRect();
  return { x: rect.left + (column + 0.5) * state.zoom, y: rect.top + (row + 0.5) * state.zoom };
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
  if (state.stroke) keepEdits();
  state.stroke = null;
});

// The time and frequency under the mouse.
canvas.addEventListener("mousemove", (event) => {
  const p = gridAt(event);
  if (!state.window || !insidePlot(p)) return;
  const seconds = (event.clientX - canvas.getBoundingClientRect().left) / state.zoom / state.session.width *
    state.window.duration_s;
  $("readout").textContent = `${seconds.toFixed(3)} s · ${state.session.row_frequencies_khz[p.r].toFixed(1)} kHz`;
});
canvas.addEventListener("mouseleave", () => { $("readout").textContent = ""; });

// ---- drawing ---------------------------------------------------------------------------------------------------

function niceStep(span, most) {
  for (const base of [1e-3, 1e-2, 1e-1, 1, 10]) {
    for (const m of [1, 2, 5]) if (span / (base * m) <= most) return base * m;
  }
  return span;
}

function resize(target, width, height) {
  if (target.width !== width || target.height !== height) {
    target.width = width;
    target.height = height;
  }
}

function axisContext(axis, width, height) {
  resize(axis, width, height);
  const g = axis.getContext("2d");
  g.setTransform(1, 0, 0, 1, 0, 0);
  g.clearRect(0, 0, width, height);
  g.fillStyle = "#d0d4dc";
  g.strokeStyle = "#8a90a0";
  g.font = "12px system-ui, sans-serif";
  return g;
}

function tick(g, x0, y0, x1, y1) {
  g.beginPath(); g.moveTo(x0, y0); g.lineTo(x1, y1); g.stroke();
}

// A label at least 40 pixels apart, every 2^k rows (round values on a linear axis), at the rows' own frequencies;
// the end labels kept inside the axis.
function drawFrequencyAxis(plotHeight) {
  const { height, row_frequencies_khz: rows } = state.session;
  const g = axisContext($("frequency-axis"), FREQUENCY_AXIS_WIDTH, plotHeight);
  const right = FREQUENCY_AXIS_WIDTH;
  let every = 1;
  while (every * state.zoom < 40) every *= 2;
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (let r = 0; r < height; r += every) {
    const y = (r + 0.5) * state.zoom;
    tick(g, right - 5, y, right, y);
    g.fillText(rows[r].toFixed(rows[r] < 10 ? 1 : 0), right - 7, Math.min(Math.max(y, 7), plotHeight - 7));
  }
  g.translate(14, plotHeight / 2);
  g.rotate(-Math.PI / 2);
  g.textAlign = "center";
  g.fillText("frequency (kHz)", 0, 0);
}

// A label about every 70 pixels of time, the end labels kept inside the axis.
function drawTimeAxis(plotWidth) {
  const duration = state.window.duration_s;
  const g = axisContext($("time-axis"), plotWidth, TIME_AXIS_HEIGHT);
  const step = niceStep(duration, Math.max(2, Math.floor(plotWidth / 70)));
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  g.textAlign = "center";
  g.textBaseline = "top";
  for (let i = 0; i * step <= duration + 1e-9; i++) {
    const x = (i * step / duration) * plotWidth, label = (i * step).toFixed(decimals);
    const half = g.measureText(label).width / 2;
    tick(g, x, 0, x, 5);
    g.fillText(label, Math.min(Math.max(x, half), plotWidth - half), 7);
  }
  g.fillText("time (s)", plotWidth / 2, 24);
}

function draw() {
  if (!state.window) return;
  const { width, height } = state.session;
  const plotWidth = width * state.zoom, plotHeight = height * state.zoom;
  resize(canvas, plotWidth, plotHeight);
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.imageSmoothingEnabled = false;
  context.drawImage(state.image, 0, 0, plotWidth, plotHeight);

  overlay.width = width;
  overlay.height = height;
  const pixels = new ImageData(width, height);
  state.mask.forEach((value, i) => {
    if (value) pixels.data.set([...OVERLAY_RGB, 255], i * 4);
  });
  overlay.getContext("2d").putImageData(pixels, 0, 0);
  context.globalAlpha = Number($("opacity").value);
  context.drawImage(overlay, 0, 0, plotWidth, plotHeight);
  context.globalAlpha = 1;

  if (state.box) {
    const { from, to } = state.box;
    context.strokeStyle = "#ffffff";
    context.strokeRect(Math.min(from.c, to.c) * state.zoom, Math.min(from.r, to.r) * state.zoom,
      (Math.abs(to.c - from.c) + 1) * state.zoom, (Math.abs(to.r - from.r) + 1) * state.zoom);
  }
  if (state.cursorS !== null) {
    const x = (state.cursorS / state.window.duration_s) * plotWidth;
    context.strokeStyle = "#ffdd33";
    context.lineWidth = 2;
    tick(context, x, 0, x, plotHeight);
    context.lineWidth = 1;
  }
  drawFrequencyAxis(plotHeight);
  drawTimeAxis(plotWidth);
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
  if (!box) return;
  box.checked = !box.checked;
  keepEdits();
}

// Was the last control used with the mouse? Then it gives the keys back to the page; used from the keyboard, it
// keeps the focus and its own keys (arrows move a slider, not the queue).
let pointerUsed = false;
document.addEventListener("pointerdown", () => { pointerUsed = true; }, true);
document.addEventListener("keydown", () => { pointerUsed = false; }, true);

function bindControls() {
  document.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("clear").addEventListener("click", () => edit(() => state.mask.fill(0), null));
  $("zoom-in").addEventListener("click", () => zoomBy(1));
  $("zoom-out").addEventListener("click", () => zoomBy(-1));
  $("play").addEventListener("click", togglePlayback);
  $("accept").addEventListener("click", accept);
  $("skip").addEventListener("click", () => load(state.index + 1));
  $("previous").addEventListener("click", () => load(state.index - 1));
  $("discard").addEventListener("click", discard);
  $("conflict-reload").addEventListener("click", discard);
  $("conflict-overwrite").addEventListener("click", overwrite);
  $("labels").addEventListener("change", keepEdits);
  $("size").addEventListener("input", () => { $("size-value").textContent = $("size").value; });
  $("opacity").addEventListener("input", () => { $("opacity-value").textContent = Number($("opacity").value).toFixed(2); draw(); });
  // While the slider moves, the readout shows the value about to be used; the mask's own once it arrives.
  $("sensitivity").addEventListener("input", () => {
    $("sensitivity-value").textContent = `${Number($("sensitivity").value).toFixed(2)}…`;
  });
  $("sensitivity").addEventListener("change", recomputeCandidate);
  // A drag that ends where it began changes nothing: the readout goes back to the mask's value.
  $("sensitivity").addEventListener("pointerup", () => setTimeout(() => state.candidatePending || showSensitivity()));
  document.querySelectorAll("button, input, select").forEach((element) => {
    element.addEventListener(element.tagName === "BUTTON" ? "click" : "change", () => {
      if (pointerUsed) element.blur();
    });
  });
}

const KEYS = {
  a: accept, Enter: accept, s: () => load(state.index + 1), ArrowRight: () => load(state.index + 1),
  p: () => load(state.index - 1), ArrowLeft: () => load(state.index - 1),
  b: () => setTool("brush"), e: () => setTool("eraser"), r: () => setTool("box"),
  z: undo, y: redo, c: () => edit(() => state.mask.fill(0), null), " ": togglePlayback,
  "+": () => zoomBy(1), "=": () => zoomBy(1), "-": () => zoomBy(-1), "[": () => nudgeSize(-1), "]": () => nudgeSize(1),
  1: () => toggleLabel(0), 2: () => toggleLabel(1), 3: () => toggleLabel(2),
};

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.metaKey || !state.session) return;
  if (event.target.closest && event.target.closest("input, select, textarea, button")) return;
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
  bindControls();
  setTool("brush");
  updateCounter(session.accepted, session.total);
  restoreDrafts();
  showUnsaved();
  document.title = `mgc annotate · ${session.manifest} · ${session.preset}`;
  await load(session.resume);
}

window.annotator = { state, gridToClient };
start().catch((error) => status(`cannot start: ${error.message}`));
