// trimodal's search page: plain ES module, no build step, nothing fetched from outside the server.
// Everything the API returns is put on the page with textContent / attributes, never innerHTML.

const PAGE_SIZE = 10;
const MAX_RECORD_S = 15;
const MAX_BARS = 120; // timeline bars per chart
// A "busy" answer (503 + Retry-After) is tried again by itself, this many times, each after the
// wait the server asked for (at most BUSY_WAIT_MAX_S): a search that lands while the cards'
// thumbnails or another upload hold every slot is not lost.
const BUSY_RETRIES = 3;
const BUSY_WAIT_MAX_S = 10;
const SVG_NS = "http://www.w3.org/2000/svg";
const AUDIO_EXTENSIONS = ["wav", "mp3", "flac", "ogg", "oga", "opus", "m4a", "aac", "weba"];

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("search-form"),
  query: $("query"),
  searchButton: $("search-button"),
  file: $("file"),
  record: $("record"),
  recordMessage: $("record-message"),
  error: $("error"),
  status: $("status"),
  results: $("results"),
  resultsHeading: $("results-heading"),
  empty: $("empty"),
  more: $("more"),
  meta: $("meta"),
  indexInfo: $("index-info"),
  player: $("player"),
  playerTitle: $("player-title"),
  playerMedia: $("player-media"),
  playerTimeline: $("player-timeline"),
  playerSegment: $("player-segment"),
  playerReplay: $("player-replay"),
  playerClose: $("player-close"),
};

// The search being shown: what was asked (so "more results" can ask for the next page) and how
// many hits are on the page.
let current = null;
let inFlight = null; // AbortController of the request under way
let opener = null; // the card that opened the player (focus goes back to it)

// ---------------------------------------------------------------- formatting

const seconds = (s) => `${Number(s).toFixed(2)}`;
const segmentText = (hit) => `${seconds(hit.start_s)}–${seconds(hit.end_s)} s`;
const hitName = (hit) => hit.title || hit.id;

function selectedTarget() {
  const checked = document.querySelector('input[name="target"]:checked');
  return checked ? checked.value : "video";
}

// ---------------------------------------------------------------- messages

class ApiFailure extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.textContent = "";
  ui.error.hidden = true;
}

function describeFailure(e) {
  if (e instanceof ApiFailure) {
    let text = `${e.message} (${e.code}, HTTP ${e.status})`;
    if (e.retryAfter) text += ` — try again in ${e.retryAfter} s.`;
    return text;
  }
  if (e instanceof TypeError) return "Cannot reach the server. Is it running?";
  return `Something went wrong: ${e.message || e}`;
}

function setLoading(on, text = "Searching…") {
  ui.status.textContent = on ? text : "";
  ui.status.classList.toggle("busy", on);
  ui.results.setAttribute("aria-busy", on ? "true" : "false");
  document.body.classList.toggle("loading", on);
  ui.searchButton.disabled = on;
  ui.more.disabled = on;
}

// ---------------------------------------------------------------- API

async function fetchJSON(url, init = {}) {
  const response = await fetch(url, init);
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const err = body && body.error ? body.error : {};
    throw new ApiFailure(
      response.status,
      err.code || "http_error",
      err.message || response.statusText || "the request failed",
      response.headers.get("Retry-After"),
    );
  }
  if (body === null) throw new ApiFailure(response.status, "bad_response", "the answer is not JSON");
  return body;
}

function pause(ms, signal) {
  const replaced = () => new DOMException("the search was replaced", "AbortError");
  if (signal.aborted) return Promise.reject(replaced());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(replaced());
      },
      { once: true },
    );
  });
}

// `ask`, with a busy server's answer tried again after the wait it asked for.
async function askPatiently(search, offset, signal) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await ask(search, offset, signal);
    } catch (e) {
      const busy = e instanceof ApiFailure && e.status === 503 && e.code === "busy";
      if (!busy || attempt >= BUSY_RETRIES) throw e;
      const wait = Math.min(Math.max(Number(e.retryAfter) || 1, 1), BUSY_WAIT_MAX_S);
      ui.status.textContent = `The server is busy; trying again in ${wait} s…`;
      await pause(wait * 1000, signal);
    }
  }
}

function ask(search, offset, signal) {
  const options = { target: search.target, k: PAGE_SIZE, offset };
  if (search.kind === "text") {
    return fetchJSON("/v1/search/text", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query: search.query, ...options }),
      signal,
    });
  }
  // Uploads carry no server-side state, so every page sends the file again.
  const form = new FormData();
  form.append("file", search.file, search.fileName);
  form.append("options", JSON.stringify(options));
  return fetchJSON(search.route, { method: "POST", body: form, signal });
}

async function run(search, { append = false } = {}) {
  if (inFlight) inFlight.abort();
  const controller = new AbortController();
  inFlight = controller;
  clearError();
  const offset = append ? current.shown : 0;
  setLoading(true, append ? "Loading more…" : `Searching for ${search.label}…`);
  let done = "";
  try {
    let page;
    try {
      page = await askPatiently(search, offset, controller.signal);
    } catch (e) {
      // The browser's type for the file guessed the wrong stream (an audio-only .webm or .mp4
      // is "video/…"; footage without sound): the file lacks that stream, so try the other.
      const wrongGuess = e instanceof ApiFailure && e.code === "no_streams";
      if (!wrongGuess || search.kind !== "upload" || search.rerouted) throw e;
      search = { ...search, route: otherRoute(search.route), rerouted: true };
      page = await askPatiently(search, offset, controller.signal);
    }
    if (inFlight !== controller) return; // a newer search replaced this one
    if (!append) {
      current = { ...search, shown: 0 };
      ui.results.replaceChildren();
      ui.resultsHeading.textContent = `Results for ${search.label}`;
    }
    showPage(page);
    done = current.shown === 1 ? "1 result" : `${current.shown} results`;
  } catch (e) {
    if (e.name === "AbortError") return;
    showError(describeFailure(e));
  } finally {
    if (inFlight === controller) {
      inFlight = null;
      setLoading(false);
      ui.status.textContent = done;
    }
  }
}

// ---------------------------------------------------------------- results

function showPage(page) {
  const start = current.shown;
  page.hits.forEach((hit, i) => {
    const li = document.createElement("li");
    li.append(card(hit, start + i + 1));
    ui.results.append(li);
  });
  current.shown += page.hits.length;
  ui.empty.hidden = current.shown > 0;
  // The API gives no total: a full page means there may be more.
  ui.more.hidden = page.hits.length < page.k;
  const t = page.timings_ms || {};
  const parts = ["decode", "encode", "search", "rerank", "landmarks", "prints", "segments"]
    .filter((stage) => stage in t)
    .map((stage) => `${stage} ${t[stage].toFixed(1)}`);
  let meta = `Index ${page.index_version} · ${(t.total ?? 0).toFixed(1)} ms total`;
  if (parts.length) meta += ` (${parts.join(", ")} ms)`;
  if (page.query_duration_s != null) meta += ` · query ${seconds(page.query_duration_s)} s long`;
  if (page.reranked) meta += " · re-ranked by time steps";
  const read = readAs(page.read_as);
  if (read) meta += ` · read as ${read}`;
  ui.meta.textContent = meta;
  if (start > 0 && page.hits.length) {
    // Keyboard users land on the first new card.
    ui.results.children[start]?.querySelector("button")?.focus();
  }
}

// What a text query's words were read to name, where it weighed in the search: "kind bell,
// size small"; "?" where the reader was sure of no value, "…" past the likeliest three (a word
// the reader did not know can read as several kinds at once).
function readAs(found) {
  if (!found) return "";
  return Object.entries(found)
    .map(([name, values]) => {
      if (!values.length) return `${name} ?`;
      const shown = values.slice(0, 3).map((v) => v.value);
      if (values.length > 3) shown.push("…");
      return `${name} ${shown.join(" or ")}`;
    })
    .join(", ");
}

// Audio–visual agreement of the item itself (indexes whose model learned timing only).
function syncText(hit) {
  if (hit.av_agreement == null) return "";
  const offset = hit.audio_offset_s ?? 0;
  const sign = offset > 0 ? "+" : "";
  return `A/V sync ${hit.av_agreement.toFixed(2)} · audio ${sign}${offset.toFixed(2)} s`;
}

// The uploaded sound is a piece of this item's own recording (found by its signal, not learned).
function sameRecordingText(hit) {
  if (hit.print_ber != null) return `same recording · ${Math.round(100 * hit.print_ber)}% bits differ`;
  if (hit.landmark_votes != null) return `same recording · ${hit.landmark_votes} landmarks agree`;
  return "";
}

// One fact on a card: its text, and what it means on hover.
function fact(className, text, title = "") {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = text;
  if (title) span.title = title;
  return span;
}

function card(hit, rank) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "card";
  button.dataset.id = hit.id;
  button.dataset.startS = String(hit.start_s);
  button.dataset.endS = String(hit.end_s);
  button.dataset.hasVideo = String(hit.has_video);
  button.setAttribute(
    "aria-label",
    `${rank}. ${hitName(hit)}, score ${hit.score.toFixed(3)}, best match ${segmentText(hit)}. Play.`,
  );

  button.append(thumbnail(hit));

  const title = document.createElement("span");
  title.className = "title";
  title.textContent = hitName(hit);
  title.title = hit.id;

  const facts = document.createElement("span");
  facts.className = "facts";
  facts.append(fact("score", `score ${hit.score.toFixed(3)}`), fact("segment", segmentText(hit)));
  const sync = syncText(hit);
  if (sync) {
    facts.append(
      fact(
        "sync",
        sync,
        "How clearly this item's sound fits its picture, and by how much the sound is late " +
          "(negative: early)",
      ),
    );
  }
  const same = sameRecordingText(hit);
  if (same) {
    facts.append(
      fact(
        "same",
        same,
        "The sound you dropped in is a piece of this item's recording: found by its signal, " +
          "placed at the segment shown",
      ),
    );
  }

  button.append(title, facts, timeline(hit, 28));
  button.addEventListener("click", () => play(hit, button));
  return button;
}

function thumbnail(hit) {
  const frame = document.createElement("span");
  frame.className = "thumb";
  if (hit.thumbnail_url) {
    const img = document.createElement("img");
    img.src = hit.thumbnail_url;
    img.alt = `Frame from ${hitName(hit)}`;
    img.loading = "lazy";
    img.decoding = "async";
    img.addEventListener("error", () => img.replaceWith(placeholder("no picture")), { once: true });
    frame.append(img);
  } else {
    frame.append(placeholder("sound only"));
  }
  return frame;
}

function placeholder(text) {
  const span = document.createElement("span");
  span.className = "placeholder";
  const icon = document.createElement("span");
  icon.className = "icon";
  icon.setAttribute("aria-hidden", "true");
  icon.textContent = "♪";
  const label = document.createElement("span");
  label.textContent = text;
  span.append(icon, label);
  return span;
}

// The per-step match score as bars; the steps inside the matched segment are highlighted.
function timeline(hit, height) {
  const values = hit.timeline || [];
  const sps = hit.steps_per_second || 4;
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "timeline");
  svg.setAttribute("height", String(height));
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Match over time, best from ${segmentText(hit)}`);
  const n = Math.max(values.length, 1);
  svg.setAttribute("viewBox", `0 0 ${n} 1`);

  const band = document.createElementNS(SVG_NS, "rect");
  band.setAttribute("class", "band");
  const x0 = Math.max(0, hit.start_s * sps);
  const x1 = Math.min(n, Math.max(x0, hit.end_s * sps));
  band.setAttribute("x", String(x0));
  band.setAttribute("width", String(Math.max(x1 - x0, n / Math.min(n, MAX_BARS))));
  band.setAttribute("y", "0");
  band.setAttribute("height", "1");
  svg.append(band);

  // Long items: at most MAX_BARS bars, each the best score of the steps it covers.
  const bins = Math.min(values.length, MAX_BARS);
  const per = values.length / Math.max(bins, 1);
  const heights = [];
  for (let b = 0; b < bins; b++) {
    const first = Math.floor(b * per);
    const last = Math.max(Math.floor((b + 1) * per), first + 1);
    let best = -Infinity;
    for (let i = first; i < last; i++) best = Math.max(best, values[i]);
    heights.push(best);
  }
  const lo = heights.reduce((a, v) => Math.min(a, v), Infinity);
  const hi = heights.reduce((a, v) => Math.max(a, v), -Infinity);
  heights.forEach((v, b) => {
    const h = hi > lo ? 0.08 + (0.92 * (v - lo)) / (hi - lo) : 0.5;
    const from = b * per; // in steps
    const bar = document.createElementNS(SVG_NS, "rect");
    const inside = from / sps < hit.end_s && (from + per) / sps > hit.start_s;
    bar.setAttribute("class", inside ? "bar hit" : "bar");
    bar.setAttribute("x", String(from + 0.1 * per));
    bar.setAttribute("width", String(0.8 * per));
    bar.setAttribute("y", String(1 - h));
    bar.setAttribute("height", String(h));
    svg.append(bar);
  });
  return svg;
}

// ---------------------------------------------------------------- player

function play(hit, from) {
  opener = from;
  stopPlayer();
  ui.playerTitle.textContent = hitName(hit);
  ui.playerSegment.textContent = `Best match ${segmentText(hit)} · score ${hit.score.toFixed(3)}`;

  const media = document.createElement(hit.has_video ? "video" : "audio");
  media.id = "player-element";
  media.controls = true;
  media.preload = "auto";
  media.playsInline = true;
  media.dataset.startS = String(hit.start_s);
  if (hit.thumbnail_url) media.poster = hit.thumbnail_url;
  media.addEventListener(
    "loadedmetadata",
    () => {
      media.currentTime = hit.start_s;
      startPlaying(media);
    },
    { once: true },
  );
  media.addEventListener("error", () => {
    showError(`Cannot play ${hitName(hit)}: the browser could not load its media.`);
  });
  media.src = hit.media_url;
  ui.playerMedia.replaceChildren(media);

  const line = timeline(hit, 40);
  line.addEventListener("click", (event) => {
    // Clicking the timeline seeks there.
    const box = line.getBoundingClientRect();
    const duration = (hit.timeline.length || 1) / (hit.steps_per_second || 4);
    media.currentTime = Math.max(0, ((event.clientX - box.left) / box.width) * duration);
    startPlaying(media);
  });
  ui.playerTimeline.replaceChildren(line);

  ui.playerReplay.onclick = () => {
    media.currentTime = hit.start_s;
    startPlaying(media);
  };
  if (!ui.player.open) ui.player.showModal();
}

function startPlaying(media) {
  const promise = media.play();
  if (promise) promise.catch(() => {}); // autoplay refused: the controls are there
}

function stopPlayer() {
  const media = ui.playerMedia.querySelector("video, audio");
  if (media) {
    media.pause();
    media.removeAttribute("src");
    media.load(); // stops the download
  }
  ui.playerMedia.replaceChildren();
}

ui.playerClose.addEventListener("click", () => ui.player.close());
ui.player.addEventListener("close", () => {
  stopPlayer();
  opener?.focus();
});
ui.player.addEventListener("click", (event) => {
  if (event.target === ui.player) ui.player.close(); // a click on the backdrop
});

// ---------------------------------------------------------------- text search

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const query = ui.query.value.trim();
  if (!query) {
    showError("Type something to search for.");
    ui.query.focus();
    return;
  }
  run({ kind: "text", query, target: selectedTarget(), label: `“${query}”` });
});

for (const radio of document.querySelectorAll('input[name="target"]')) {
  radio.addEventListener("change", () => {
    if (current) run({ ...current, target: selectedTarget() });
  });
}

ui.more.addEventListener("click", () => {
  if (current) run(current, { append: true });
});

// ---------------------------------------------------------------- uploads

function isAudio(file) {
  if (file.type) return file.type.startsWith("audio/");
  const ext = (file.name.split(".").pop() || "").toLowerCase();
  return AUDIO_EXTENSIONS.includes(ext);
}

function otherRoute(route) {
  return route === "/v1/search/audio" ? "/v1/search/video" : "/v1/search/audio";
}

function uploadSearch(file, fileName, label) {
  const audio = isAudio(file);
  run({
    kind: "upload",
    route: audio ? "/v1/search/audio" : "/v1/search/video",
    file,
    fileName,
    target: selectedTarget(),
    label,
  });
}

ui.file.addEventListener("change", () => {
  const file = ui.file.files[0];
  if (!file) return;
  uploadSearch(file, file.name, file.name);
  ui.file.value = ""; // choosing the same file again searches again
});

// ---------------------------------------------------------------- microphone

let recording = null; // {recorder, stream, timer, started}
let asking = false; // the browser is asking for the microphone: a second click starts nothing

function recordingSupported() {
  return Boolean(navigator.mediaDevices?.getUserMedia && window.MediaRecorder);
}

function setRecordMessage(text) {
  ui.recordMessage.textContent = text;
  ui.recordMessage.hidden = !text;
}

function extensionFor(mime) {
  if (mime.includes("ogg")) return "ogg";
  if (mime.includes("mp4")) return "m4a";
  if (mime.includes("wav")) return "wav";
  return "webm";
}

async function startRecording() {
  if (asking) return;
  let stream;
  asking = true;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    showError(`Cannot use the microphone: ${e.message || e.name}`);
    return;
  } finally {
    asking = false;
  }
  clearError();
  const chunks = [];
  const recorder = new MediaRecorder(stream);
  recorder.addEventListener("dataavailable", (e) => {
    if (e.data && e.data.size) chunks.push(e.data);
  });
  recorder.addEventListener("stop", () => {
    stream.getTracks().forEach((track) => track.stop());
    clearInterval(recording.timer);
    recording = null;
    ui.record.textContent = "Record from microphone";
    ui.record.setAttribute("aria-pressed", "false");
    ui.record.classList.remove("recording");
    setRecordMessage("");
    const type = (recorder.mimeType || "audio/webm").split(";")[0];
    const blob = new Blob(chunks, { type });
    if (!blob.size) {
      showError("Nothing was recorded.");
      return;
    }
    uploadSearch(blob, `recording.${extensionFor(type)}`, "your recording");
  });
  recording = { recorder, stream, started: Date.now(), timer: 0 };
  recording.timer = setInterval(() => {
    const s = Math.floor((Date.now() - recording.started) / 1000);
    setRecordMessage(`Recording… ${s} s (stops by itself at ${MAX_RECORD_S} s)`);
    if (s >= MAX_RECORD_S) stopRecording();
  }, 250);
  recorder.start();
  ui.record.textContent = "Stop and search";
  ui.record.setAttribute("aria-pressed", "true");
  ui.record.classList.add("recording");
  setRecordMessage("Recording… 0 s");
}

function stopRecording() {
  if (recording && recording.recorder.state !== "inactive") recording.recorder.stop();
}

if (recordingSupported()) {
  ui.record.addEventListener("click", () => (recording ? stopRecording() : startRecording()));
} else {
  ui.record.disabled = true;
  setRecordMessage(
    window.isSecureContext
      ? "This browser cannot record audio; upload a file instead."
      : "Recording needs a secure page (https:// or localhost); upload a file instead.",
  );
}

// ---------------------------------------------------------------- index info

async function showIndexInfo() {
  try {
    const info = await fetchJSON("/v1/index");
    ui.indexInfo.textContent = `${info.items} items · index ${info.version}`;
  } catch (e) {
    ui.indexInfo.textContent =
      e instanceof ApiFailure && e.status === 503 ? "The index is still loading…" : "";
  }
}

showIndexInfo();
ui.query.focus();
