// The explorer page: talks to the JSON API of jpeg_jax/explore/server.py. Plain JavaScript,
// no libraries. Rectangles are [left, top, right, bottom] pixels of the upright photo.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    info: null, // the session's state from the server
    versions: [], // one version number per sample (changes when a sample is re-drawn)
    index: 0,
    view: "sample",
    box: null,
    job: null,
    busy: false,
    flicker: null,
    shownKey: "",
    pcsVersion: 0,
    timer: null, // {start, what}: latency of the next view shown (first sample, re-draw)
  };
  const sid = () => state.info.session;

  async function json(path, body) {
    const options = body === undefined ? {} : {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    };
    const response = await fetch(path, options);
    const data = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
  }

  function setStatus(text) { $("status").textContent = text; }

  function imageUrl(view, index, sign, version) {
    return `/api/sessions/${sid()}/image?view=${view}&index=${index}&sign=${sign}&v=${version}`;
  }

  // ------------------------------------------------------------------------- jobs
  function showProgress(job) {
    $("progress").hidden = false;
    $("progress-bar").max = Math.max(job.total, 1);
    $("progress-bar").value = job.done;
    $("progress-text").textContent = job.message || job.kind;
  }

  async function runJob(url, body, onPoll) {
    showError("");
    let job;
    try { job = await json(url, body); } catch (e) { showError(e.message); return null; }
    const id = job.id;
    state.job = id;
    setBusy(true);
    showProgress(job);
    while (job.status === "running") {
      try {
        job = await json(`/api/jobs/${id}?done=${job.done}`); // answers on progress
      } catch (e) { job = {status: "failed", error: e.message}; }
      if (state.job !== id) return null; // superseded by a newer job
      if (job.status !== "failed") showProgress(job);
      if (onPoll) await onPoll(job);
    }
    $("progress").hidden = true;
    setBusy(false);
    if (job.status === "failed") { showError(job.error); return null; }
    return job.status === "done" ? job : null;
  }

  function setBusy(busy) {
    state.busy = busy;
    const ready = state.box && state.versions.length > 0 && !busy;
    $("redraw").disabled = !ready;
    $("components").disabled = !ready;
  }

  // ------------------------------------------------------------------ opening, drawing
  async function openFile(file) {
    if (!file) return;
    showError("");
    stopFlicker();
    setStatus(`reading ${file.name}…`);
    const start = performance.now();
    let info;
    try {
      const response = await fetch(`/api/open?name=${encodeURIComponent(file.name)}`, {
        method: "POST", body: file, headers: {"Content-Type": "application/octet-stream"},
      });
      info = await response.json();
      if (!response.ok) throw new Error(info.error);
    } catch (e) {
      showError(e.message);
      setStatus(state.info ? "" : "open a JPEG to start");
      return;
    }
    Object.assign(state, {info, versions: [], index: 0, box: null, shownKey: "", view: "sample"});
    state.timer = {start, what: "firstSampleMs"};
    $("file-name").textContent = `${info.name}: ${info.size[1]} × ${info.size[0]} px, ${info.subsampling}`;
    $("jpeg-img").src = imageUrl("jpeg", 0, 0, 0);
    $("before-img").src = $("jpeg-img").src;
    $("view-img").removeAttribute("src");
    delete $("view-img").dataset.loaded;
    $("selection").hidden = true;
    $("pcs").hidden = true;
    $("region-text").textContent = "";
    $("draw").disabled = false;
    for (const b of document.querySelectorAll("#views button")) b.classList.toggle("active", b.dataset.view === "sample");
    applyZoom();
    await draw(false);
  }

  async function draw(fresh) {
    if (!state.info) return;
    const body = {
      count: Number($("count").value), temperature: Number($("temperature").value),
      project: $("project").checked, fresh,
    };
    const job = await runJob(`/api/sessions/${sid()}/draw`, body, refresh);
    if (job) {
      await refresh();
      setStatus(`${state.versions.length} samples at temperature ${body.temperature.toFixed(2)}`);
    }
  }

  async function refresh() {
    const info = await json(`/api/sessions/${sid()}`);
    if (info.session !== sid()) return;
    state.info = info;
    state.versions = info.versions;
    if (state.index >= state.versions.length) state.index = Math.max(0, state.versions.length - 1);
    setBusy(state.busy);
    updateView();
  }

  // -------------------------------------------------------------------------- views
  function currentView() {
    const n = state.versions.length;
    if (state.view === "mean" && n >= 1) return {key: `mean:0:${state.versions.join(".")}`, index: 0, label: `mean of ${n} samples`};
    if (state.view === "std" && n >= 2) return {key: `std:0:${state.versions.join(".")}`, index: 0, label: `uncertainty of ${n} samples (std^(1/4))`};
    if (state.view === "sample" && n >= 1) {
      return {key: `sample:${state.index}:${state.versions[state.index]}`, index: state.index, label: `sample ${state.index + 1} of ${n}`};
    }
    return null;
  }

  function updateView() {
    const n = state.versions.length;
    $("index-text").textContent = n ? `${state.index + 1} / ${n}` : "–";
    const view = currentView();
    if (!view) {
      $("view-label").textContent = state.view === "std" ? "uncertainty needs 2 samples" : "waiting for samples…";
      return;
    }
    if (view.key === state.shownKey) return;
    state.shownKey = view.key;
    const [name, , version] = view.key.split(":");
    const url = imageUrl(name, view.index, 0, version);
    const img = $("view-img");
    img.onload = () => {
      if (state.shownKey !== view.key) return;
      img.dataset.loaded = view.key;
      $("view-label").textContent = view.label;
      $("download").href = `${url}&download=1`;
      $("download").classList.remove("disabled");
      if (state.timer) {
        document.body.dataset[state.timer.what] = String(Math.round(performance.now() - state.timer.start));
        state.timer = null;
      }
      showConsistency(name, view);
    };
    img.src = url;
  }

  async function showConsistency(name, view) {
    $("consistency").textContent = "";
    if (name === "std") return;
    try {
      const c = await json(`/api/sessions/${sid()}/consistency?view=${name}&index=${view.index}`);
      if (state.shownKey !== view.key) return;
      $("consistency").textContent = `in-bin ${(100 * c.in_bin).toFixed(2)} % · RMSE ${c.rmse.toFixed(2)} grey levels`;
    } catch (e) { /* a view replaced meanwhile: nothing to show */ }
  }

  function step(delta) {
    const n = state.versions.length;
    if (!n) return;
    state.index = (state.index + delta + n) % n;
    if (state.view !== "sample") selectView("sample");
    updateView();
  }

  function selectView(view) {
    state.view = view;
    for (const b of document.querySelectorAll("#views button")) b.classList.toggle("active", b.dataset.view === view);
    updateView();
  }

  function stopFlicker() {
    clearInterval(state.flicker);
    state.flicker = null;
    $("flicker").classList.remove("active");
  }

  function toggleFlicker() {
    if (state.flicker) return stopFlicker();
    state.flicker = setInterval(() => step(1), 400);
    $("flicker").classList.add("active");
  }

  // ------------------------------------------------------------------- zoom, layout
  function applyZoom() {
    if (!state.info) return;
    const zoom = $("zoom").value;
    const [h, w] = state.info.size;
    const scroller = document.querySelector("#right-pane .scroller");
    // "fit": the whole photo in view (pane width, 72 % of the window's height).
    const fit = Math.min(scroller.clientWidth, (window.innerHeight * 0.72 * w) / h);
    const width = zoom === "fit" ? `${Math.floor(fit)}px` : `${w * Number(zoom)}px`;
    for (const stage of document.querySelectorAll(".stage")) {
      stage.style.width = width;
      stage.classList.toggle("zoomed", zoom !== "fit");
    }
    $("compare").style.width = zoom === "fit" ? width : "100%";
  }

  function applyCompare() {
    const x = Number($("compare").value);
    $("before-img").style.clipPath = `inset(0 ${100 - x}% 0 0)`;
    $("compare-line").style.left = `${x}%`;
  }

  function syncScroll(from, to) {
    from.addEventListener("scroll", () => {
      if (to.scrollLeft !== from.scrollLeft) to.scrollLeft = from.scrollLeft;
      if (to.scrollTop !== from.scrollTop) to.scrollTop = from.scrollTop;
    });
  }

  // ----------------------------------------------------------------------- regions
  function imagePoint(event) {
    const r = $("view-img").getBoundingClientRect();
    const [h, w] = state.info.size;
    const clamp = (v, hi) => Math.min(Math.max(v, 0), hi);
    return [clamp((event.clientX - r.left) / r.width * w, w), clamp((event.clientY - r.top) / r.height * h, h)];
  }

  function showSelection(box, pending) {
    const [h, w] = state.info.size;
    const s = $("selection");
    Object.assign(s.style, {
      left: `${box[0] / w * 100}%`, top: `${box[1] / h * 100}%`,
      width: `${(box[2] - box[0]) / w * 100}%`, height: `${(box[3] - box[1]) / h * 100}%`,
    });
    s.classList.toggle("pending", pending);
    s.dataset.box = pending ? "" : box.join(",");
    s.hidden = false;
  }

  function enableRegions() {
    const stage = $("view-stage");
    let drag = null;
    stage.addEventListener("pointerdown", (e) => {
      if (!state.info || !state.versions.length || e.button !== 0) return;
      drag = {start: imagePoint(e)};
      stage.setPointerCapture(e.pointerId);
      e.preventDefault();
    });
    stage.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const [a, b] = [drag.start, imagePoint(e)];
      showSelection([Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])], true);
    });
    stage.addEventListener("pointerup", async (e) => {
      if (!drag) return;
      const [a, b] = [drag.start, imagePoint(e)];
      drag = null;
      const box = [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
      if (box[2] - box[0] < 2 || box[3] - box[1] < 2) {
        state.box = null;
        $("selection").hidden = true;
        $("region-text").textContent = "";
        return setBusy(state.busy);
      }
      try {
        state.box = (await json(`/api/sessions/${sid()}/snap`, {box})).box;
      } catch (err) { showError(err.message); return; }
      showSelection(state.box, false);
      const [l, t, r, bt] = state.box;
      $("region-text").textContent = `region ${r - l} × ${bt - t} px at (${l}, ${t})`;
      setBusy(state.busy);
    });
  }

  async function redraw() {
    const index = state.index;
    const start = performance.now();
    const job = await runJob(`/api/sessions/${sid()}/redraw`, {
      index, box: state.box, temperature: Number($("temperature").value),
    });
    if (!job) return;
    state.timer = {start, what: "redrawMs"};
    if (state.view !== "sample") selectView("sample");
    await refresh();
    setStatus(`re-drew the region of sample ${index + 1} (${job.seconds.toFixed(2)} s of model work)`);
  }

  async function components() {
    const k = Number($("k").value);
    // Region samples are cheap (the model runs on a crop around the region): at least 16.
    const count = Math.max(Number($("count").value), 16, k + 1);
    const job = await runJob(`/api/sessions/${sid()}/components`, {
      box: state.box, count, k, temperature: Number($("temperature").value),
    });
    if (!job) return;
    state.pcsVersion += 1;
    renderComponents(job.result, count);
  }

  function renderComponents(pcs, count) {
    const [l, t, r, b] = pcs.box;
    const scale = Math.max(1, Math.floor(192 / Math.max(r - l, b - t)));
    const gallery = $("pcs-gallery");
    gallery.replaceChildren();
    const figure = (i, sign, caption) => {
      const f = document.createElement("figure");
      const img = document.createElement("img");
      img.src = imageUrl("pc", i, sign, state.pcsVersion);
      img.width = (r - l) * scale;
      img.height = (b - t) * scale;
      const c = document.createElement("figcaption");
      c.textContent = caption;
      f.append(img, c);
      return f;
    };
    const values = (r - l) * (b - t) * 3;
    pcs.explained.forEach((fraction, i) => {
      const row = document.createElement("div");
      row.className = "pc-row";
      const label = document.createElement("div");
      label.className = "pc-label";
      const rms = Math.sqrt(pcs.variance[i] / values);
      label.textContent = `component ${i + 1}: ${(100 * fraction).toFixed(1)} % of the variance ` +
        `(±σ moves the region by ${rms.toFixed(1)} grey levels RMS)`;
      row.append(label, figure(i, -1, "mean − σ·v"), figure(i, 0, "mean"), figure(i, 1, "mean + σ·v"),
        figure(i, 2, "v (grey = 0, amplified)"));
      gallery.append(row);
    });
    const total = pcs.explained.reduce((a, b) => a + b, 0);
    $("pcs-summary").textContent = `${count} new samples of the region ${r - l} × ${b - t} px at ` +
      `(${l}, ${t}); the ${pcs.explained.length} components explain ${(100 * total).toFixed(1)} % ` +
      `of their variance. Each row: the samples' mean minus and plus one standard deviation σ ` +
      `along the component (NPPC-style), and the direction v itself, stretched to full contrast.`;
    $("pcs").hidden = false;
  }

  // ------------------------------------------------------------------------ wiring
  $("file").addEventListener("change", (e) => openFile(e.target.files[0]));
  document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("drag-over"); });
  document.addEventListener("dragleave", () => document.body.classList.remove("drag-over"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    document.body.classList.remove("drag-over");
    openFile(e.dataTransfer.files[0]);
  });
  $("draw").addEventListener("click", () => draw(true));
  $("count").addEventListener("change", () => draw(false));
  $("project").addEventListener("change", () => draw(false));
  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
  });
  $("temperature").addEventListener("change", () => draw(false));
  for (const b of document.querySelectorAll("#views button")) b.addEventListener("click", () => selectView(b.dataset.view));
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("flicker").addEventListener("click", toggleFlicker);
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.key === "ArrowLeft") step(-1);
    if (e.key === "ArrowRight") step(1);
  });
  $("layout").addEventListener("change", () => {
    $("viewer").className = $("layout").value;
    applyZoom();
  });
  window.addEventListener("resize", applyZoom);
  $("zoom").addEventListener("change", applyZoom);
  $("compare").addEventListener("input", applyCompare);
  $("redraw").addEventListener("click", redraw);
  $("components").addEventListener("click", components);
  syncScroll(document.querySelector("#left-pane .scroller"), document.querySelector("#right-pane .scroller"));
  syncScroll(document.querySelector("#right-pane .scroller"), document.querySelector("#left-pane .scroller"));
  enableRegions();
  applyCompare();
})();
