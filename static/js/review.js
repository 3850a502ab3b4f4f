// The review desk: keyboard-first, one image at a time, the next ones already claimed and loaded.
//
// The screen holds up to BUFFER leased items (items[0] is on screen). A decision shows the next
// item at once and is saved in the background; every state-changing request goes through one
// ordered chain, so an undo always follows the decision it undoes. Plain JS, no dependencies.
"use strict";

(() => {
  const desk = document.getElementById("desk");
  if (!desk) return;

  const BUFFER = 3;
  const RETRY_EMPTY_MS = 30000;
  const urls = JSON.parse(desk.dataset.urls);
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const el = {
    viewer: $("viewer"), stage: $("stage"), photo: $("photo"), heat: $("heat"),
    message: $("viewer-message"), stamp: $("stamp"), title: $("item-title"), ahead: $("ahead"),
    zoom: $("zoom-level"), heatState: $("heat-state"), note: $("note"), help: $("help"),
    toast: $("toast"), filters: $("filters"), verdict: $("verdict"), confidence: $("confidence"),
    confidenceBar: $("confidence-bar"), version: $("model-version"), bucket: $("bucket"),
    reason: $("reason"), labelFacts: $("label-facts"), scoreFacts: $("score-facts"),
    fileFacts: $("file-facts"), history: $("history"),
  };

  const state = {
    items: [],            // leased items; items[0] is on screen
    saving: new Set(),    // ids decided on screen whose decision is not saved yet (still leased)
    filters: readFilters(),
    generation: 0,        // bumps when the filters change: late answers for old filters are dropped
    filling: false,
    exhausted: false,
    pending: 0,           // requests queued or in flight
    decided: 0,
    heatOn: false,
    heatCache: new Map(), // image id -> object URL
    preloaded: new Map(), // image id -> Image, kept so the browser keeps them decoded
    served: [],           // every image id this screen was given, in order
    view: { scale: 1, x: 0, y: 0, fitted: true },
  };
  window.reviewDesk = state; // for the curious (and the browser tests)

  // ------------------------------------------------------------------ requests

  let chain = Promise.resolve();

  function request(method, url, body) {
    const options = {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken },
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(async (response) => {
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        const error = new Error(data.message || `${response.status} ${response.statusText}`);
        error.status = response.status;
        throw error;
      }
      return data;
    });
  }

  // Run task (a function returning a promise) after every earlier task, counting it as pending.
  function enqueue(task) {
    setPending(+1);
    const result = chain.then(task);
    chain = result.catch(() => {}).then(() => setPending(-1));
    return result;
  }

  function setPending(delta) {
    state.pending += delta;
    desk.dataset.pending = String(state.pending);
  }

  // ------------------------------------------------------------------ the queue

  function heldIds() {
    return state.items.map((item) => item.image_id);
  }

  // What the server must not serve again: items on this screen, and decided ones not saved yet
  // (a claim that runs before their decision would otherwise get them back as my own leases).
  function holding() {
    return [...heldIds(), ...state.saving];
  }

  function fill() {
    if (state.filling || state.exhausted || state.items.length >= BUFFER) return;
    state.filling = true;
    const generation = state.generation;
    enqueue(() =>
      request("POST", urls.claim, { filters: state.filters, holding: holding() }).then(
        (data) => {
          state.filling = false;
          if (generation !== state.generation) {
            if (data.item) release([data.item.image_id]);
            fill();
            return;
          }
          if (!data.item) {
            state.exhausted = true;
            if (!state.items.length) setTimeout(retryEmpty, RETRY_EMPTY_MS);
            render();
            return;
          }
          add(data.item);
          fill();
        },
        (error) => {
          state.filling = false;
          toast(error.message, "error");
        },
      ),
    );
  }

  function retryEmpty() {
    if (state.items.length || !state.exhausted) return;
    state.exhausted = false;
    fill();
  }

  function add(item, first = false) {
    state.items = state.items.filter((other) => other.image_id !== item.image_id);
    if (first) state.items.unshift(item);
    else state.items.push(item);
    state.served.push(item.image_id);
    preload(item);
    if (first || state.items.length === 1) render();
    else renderAhead();
  }

  function preload(item) {
    if (state.preloaded.has(item.image_id)) return;
    const picture = new Image();
    picture.src = item.urls.image;
    if (picture.decode) picture.decode().catch(() => {});
    state.preloaded.set(item.image_id, picture);
  }

  function release(imageIds) {
    if (!imageIds.length) return;
    enqueue(() => request("POST", urls.release, { image_ids: imageIds }).catch(() => {}));
  }

  function openRequested() {
    const imageId = Number(desk.dataset.openImage);
    if (!imageId) return;
    enqueue(() =>
      request("POST", urls.claim, { image_id: imageId }).then(
        (data) => data.item && add(data.item, true),
        (error) => toast(error.message, "error"),
      ),
    );
  }

  // ------------------------------------------------------------------ decisions

  function decide(choice) {
    const item = state.items[0];
    if (!item) return;
    const note = el.note.value.trim();
    state.items.shift();
    state.saving.add(item.image_id);
    el.note.value = "";
    stamp(choice);
    render();
    const body = {
      image_id: item.image_id,
      choice,
      note,
      model_version_id: item.prediction ? item.prediction.model_version_id : null,
    };
    enqueue(() =>
      request("POST", urls.decide, body)
        .finally(() => state.saving.delete(item.image_id))
        .then(
          (data) => {
            state.decided += 1;
            showCounts(data.stats);
            if (state.decided % 10 === 0) refreshSide();
          },
          (error) => {
            if (error.status !== 409) {
              // Not saved: put it back on screen so nothing is lost.
              add(item, true);
              el.note.value = note;
            }
            toast(`Not saved: ${error.message}`, "error");
          },
        ),
    );
    fill();
  }

  function undo() {
    enqueue(() =>
      request("POST", urls.undo, {}).then(
        (data) => {
          const reverted = data.reverted;
          toast(`Undone: ${reverted.choice.toUpperCase()} on ${data.item ? data.item.file_name : "#" + reverted.image_id}`);
          showCounts(data.stats);
          if (data.item) add(data.item, true);
        },
        (error) => toast(error.status === 404 ? "Nothing to undo." : error.message, "error"),
      ),
    );
  }

  // ------------------------------------------------------------------ rendering

  function render() {
    const item = state.items[0];
    desk.dataset.imageId = item ? String(item.image_id) : "";
    desk.dataset.held = heldIds().join(",");
    renderAhead();
    if (!item) {
      desk.dataset.state = state.exhausted ? "empty" : "loading";
      el.message.textContent = state.exhausted
        ? "Nothing left to review for these filters. Well done."
        : "Loading the queue…";
      el.stage.hidden = true;
      el.title.textContent = "";
      clearInfo();
      return;
    }
    desk.dataset.state = "item";
    el.stage.hidden = false;
    el.message.textContent = "";
    showImage(item);
    showInfo(item);
  }

  function renderAhead() {
    const ahead = Math.max(0, state.items.length - 1);
    el.ahead.textContent = ahead ? `${ahead} more ready` : "";
    desk.dataset.held = heldIds().join(",");
  }

  function showImage(item) {
    const { width, height } = item.file;
    el.stage.style.width = `${width}px`;
    el.stage.style.height = `${height}px`;
    if (el.photo.dataset.imageId !== String(item.image_id)) {
      el.photo.dataset.imageId = String(item.image_id);
      el.photo.src = item.urls.image;
      el.heat.hidden = true;
      el.heat.removeAttribute("src");
      fit();
    }
    el.title.textContent = `${item.file_name} · #${item.image_id} · ${item.dataset}/${item.split}`;
    if (state.heatOn) loadHeat(item);
  }

  function showInfo(item) {
    const prediction = item.prediction;
    if (prediction) {
      el.verdict.textContent = prediction.verdict.toUpperCase();
      el.verdict.className = `verdict ${prediction.verdict}`;
      const confidence = Math.round(prediction.confidence * 100);
      el.confidence.textContent = `${confidence}% confident`;
      el.confidenceBar.style.width = `${confidence}%`;
      el.confidenceBar.className = prediction.verdict;
      el.version.textContent = `Model version ${prediction.model_version}`;
    } else {
      el.verdict.textContent = "—";
      el.verdict.className = "verdict";
      el.confidence.textContent = "no prediction";
      el.confidenceBar.style.width = "0";
      el.version.textContent = "";
    }
    el.bucket.textContent = item.bucket_title;
    el.bucket.className = `bucket-tag b-${item.bucket || "none"}`;
    el.reason.textContent = item.reason;
    facts(el.labelFacts, [
      ["Import label", badge(item.import_label)],
      ["Source", item.label_source || "—"],
      ["Current label", badge(item.label)],
      ["Review", reviewStatus(item)],
      ...(item.label_conflict ? [["Conflict", "imported with both labels"]] : []),
    ]);
    facts(el.scoreFacts, prediction ? scoreRows(prediction) : [["Scores", "none yet"]]);
    facts(el.fileFacts, fileRows(item.file));
    facts($("evidence-facts"), evidenceRows(item.evidence));
    showHistory(item.history);
  }

  // The image's stored evidence (credentials, metadata, watermark, near duplicates).
  function evidenceRows(evidence) {
    if (!evidence) return [["Evidence", "none stored"]];
    const rows = Object.entries(evidence.items)
      .filter(([, found]) => found)
      .map(([kind, found]) => [evidence.titles[kind], `${found.summary} (${found.weight})`]);
    for (const near of evidence.similar) {
      rows.push([`Near duplicate · ${near.distance}`, `${near.file_name} (${near.dataset}): ${near.decision || near.label}`]);
    }
    if (evidence.claims) rows.push(["Strong evidence says", evidence.claims.toUpperCase()]);
    return rows;
  }

  function scoreRows(p) {
    const num = (value) => (value === null || value === undefined ? "—" : value.toFixed(3));
    return [
      ["p(fake), calibrated", num(p.p_fake)],
      ["p(fake), raw", num(p.p_fake_raw)],
      ["p(fake), out of sample", num(p.oos_p_fake)],
      ["Label-issue score", num(p.label_issue_score)],
      ["Out-of-distribution", p.ood_score === null ? "—" : `${num(p.ood_score)}${p.is_ood ? " · unusual" : ""}`],
    ];
  }

  function fileRows(file) {
    const rows = [
      ["Format", `${file.format} · ${file.mode}`],
      ["Size", `${file.width} × ${file.height} px · ${bytes(file.bytes)}`],
      ["JPEG quality", file.jpeg_quality === null ? "—" : `≈ ${file.jpeg_quality}`],
    ];
    const exif = Object.entries(file.exif || {});
    rows.push(["EXIF", exif.length ? "" : file.has_exif ? "present" : "none"]);
    for (const [key, value] of exif.slice(0, 12)) rows.push([`  ${key}`, String(value)]);
    return rows;
  }

  function reviewStatus(item) {
    const names = {
      unreviewed: "not reviewed yet",
      pending: `waiting for ${item.reviews_per_item} reviews`,
      agreed: "reviewers agree",
      escalated: "reviewers disagree: escalated",
      resolved: "decided by an admin",
    };
    return names[item.review_status] || item.review_status;
  }

  function showHistory(entries) {
    el.history.replaceChildren();
    if (!entries.length) {
      const empty = document.createElement("li");
      empty.className = "muted";
      empty.textContent = "No decisions yet.";
      el.history.append(empty);
      return;
    }
    for (const entry of entries) {
      const li = document.createElement("li");
      if (entry.undone) li.classList.add("undone");
      const when = new Date(entry.created_at).toLocaleString();
      const who = document.createElement("strong");
      who.textContent = entry.mine ? `${entry.user} (you)` : entry.user;
      const what = entry.choice === "undo" ? text("undid a decision") : badge(entry.choice);
      li.append(who, " ", what, " ", span(when, "muted small"));
      if (entry.note) li.append(span(`“${entry.note}”`, "history-note"));
      el.history.append(li);
    }
  }

  function clearInfo() {
    el.verdict.textContent = "—";
    el.verdict.className = "verdict";
    el.confidence.textContent = "";
    el.confidenceBar.style.width = "0";
    el.version.textContent = "";
    el.bucket.textContent = "—";
    el.reason.textContent = "";
    for (const list of [el.labelFacts, el.scoreFacts, el.fileFacts, el.history]) list.replaceChildren();
  }

  function facts(list, rows) {
    list.replaceChildren();
    for (const [name, value] of rows) {
      const row = document.createElement("div");
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.append(value);
      row.append(dt, dd);
      list.append(row);
    }
  }

  function badge(label) {
    return span(label, `badge ${label}`);
  }

  function span(content, className) {
    const node = document.createElement("span");
    node.className = className;
    node.textContent = content;
    return node;
  }

  function text(content) {
    return document.createTextNode(content);
  }

  function bytes(count) {
    if (count < 1024) return `${count} B`;
    if (count < 1024 * 1024) return `${(count / 1024).toFixed(1)} KB`;
    return `${(count / 1024 / 1024).toFixed(1)} MB`;
  }

  function stamp(choice) {
    el.stamp.textContent = { real: "REAL", fake: "FAKE", unsure: "UNSURE", skip: "SKIPPED" }[choice];
    el.stamp.className = `stamp ${choice}`;
    el.stamp.hidden = false;
    clearTimeout(stamp.timer);
    stamp.timer = setTimeout(() => (el.stamp.hidden = true), 450);
  }

  function toast(message, kind = "info") {
    el.toast.textContent = message;
    el.toast.className = `toast ${kind}`;
    el.toast.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (el.toast.hidden = true), kind === "error" ? 6000 : 2500);
  }

  // ------------------------------------------------------------------ zoom, pan, heatmap

  function applyView() {
    const { scale, x, y } = state.view;
    el.stage.style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
    el.stage.classList.toggle("pixelated", scale >= 2);
    el.zoom.textContent = `${Math.round(scale * 100)}%`;
  }

  function fit() {
    const item = state.items[0];
    if (!item) return;
    const box = el.viewer.getBoundingClientRect();
    const { width, height } = item.file;
    const scale = Math.min((box.width - 32) / width, (box.height - 72) / height);
    state.view = {
      scale,
      x: (box.width - width * scale) / 2,
      y: (box.height - 40 - height * scale) / 2,
      fitted: true,
    };
    applyView();
  }

  function zoomAt(factor, cx, cy) {
    const view = state.view;
    const scale = Math.min(64, Math.max(0.05, view.scale * factor));
    const ratio = scale / view.scale;
    state.view = { scale, x: cx - (cx - view.x) * ratio, y: cy - (cy - view.y) * ratio, fitted: false };
    applyView();
  }

  function zoomCentre(factor) {
    const box = el.viewer.getBoundingClientRect();
    zoomAt(factor, box.width / 2, box.height / 2);
  }

  function actualPixels() {
    const box = el.viewer.getBoundingClientRect();
    zoomAt(1 / state.view.scale, box.width / 2, box.height / 2);
  }

  el.viewer.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      const box = el.viewer.getBoundingClientRect();
      zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
    },
    { passive: false },
  );

  let drag = null;
  el.viewer.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || event.target.closest("button")) return;
    drag = { x: event.clientX, y: event.clientY };
    el.viewer.setPointerCapture(event.pointerId);
    el.viewer.classList.add("dragging");
  });
  el.viewer.addEventListener("pointermove", (event) => {
    if (!drag) return;
    state.view.x += event.clientX - drag.x;
    state.view.y += event.clientY - drag.y;
    state.view.fitted = false;
    drag = { x: event.clientX, y: event.clientY };
    applyView();
  });
  const endDrag = () => {
    drag = null;
    el.viewer.classList.remove("dragging");
  };
  el.viewer.addEventListener("pointerup", endDrag);
  el.viewer.addEventListener("pointercancel", endDrag);
  window.addEventListener("resize", () => state.view.fitted && fit());

  document.querySelectorAll("[data-zoom]").forEach((button) =>
    button.addEventListener("click", () => {
      const action = button.dataset.zoom;
      if (action === "in") zoomCentre(1.25);
      else if (action === "out") zoomCentre(0.8);
      else if (action === "fit") fit();
      else actualPixels();
    }),
  );

  function toggleHeat() {
    state.heatOn = !state.heatOn;
    el.heatState.hidden = !state.heatOn;
    const item = state.items[0];
    if (!state.heatOn || !item) {
      el.heat.hidden = true;
      return;
    }
    loadHeat(item);
  }

  function loadHeat(item) {
    const cached = state.heatCache.get(item.image_id);
    if (cached) {
      showHeat(item, cached);
      return;
    }
    el.heatState.textContent = "Heatmap: computing…";
    fetch(item.urls.heatmap, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(async (response) => {
        if (!response.ok) {
          const data = await response.json().catch(() => ({}));
          throw new Error(data.message || `heatmap: ${response.status} ${response.statusText}`);
        }
        return response.blob();
      })
      .then((blob) => {
        const url = URL.createObjectURL(blob);
        state.heatCache.set(item.image_id, url);
        showHeat(item, url);
      })
      .catch((error) => {
        state.heatOn = false;
        el.heatState.hidden = true;
        toast(error.message, "error");
      });
  }

  function showHeat(item, url) {
    el.heatState.textContent = "Heatmap";
    if (!state.heatOn || !state.items[0] || state.items[0].image_id !== item.image_id) return;
    el.heat.src = url;
    el.heat.hidden = false;
  }

  // ------------------------------------------------------------------ side panel

  function readFilters() {
    const data = new FormData(document.getElementById("filters"));
    const filters = {};
    for (const name of ["bucket", "dataset", "split", "verdict"]) filters[name] = data.get(name) || "";
    return filters;
  }

  function applyFilters() {
    state.filters = readFilters();
    state.generation += 1;
    const query = new URLSearchParams(Object.entries(state.filters).filter(([, v]) => v)).toString();
    history.replaceState(null, "", query ? `${urls.desk}?${query}` : urls.desk);
    document.querySelectorAll("#bucket-counts button").forEach((button) =>
      button.classList.toggle("active", button.dataset.bucket === state.filters.bucket),
    );
    const held = heldIds();
    state.items = [];
    state.exhausted = false;
    render();
    release(held);
    refreshCounts();
    fill();
  }

  el.filters.addEventListener("change", applyFilters);
  document.querySelectorAll("#bucket-counts button").forEach((button) =>
    button.addEventListener("click", () => {
      const select = el.filters.elements.bucket;
      select.value = select.value === button.dataset.bucket ? "" : button.dataset.bucket;
      applyFilters();
    }),
  );

  function refreshCounts() {
    const params = new URLSearchParams(
      Object.entries(state.filters).filter(([name, v]) => v && name !== "bucket"),
    );
    request("GET", `${urls.counts}?${params}`)
      .then((data) => {
        for (const [name, count] of Object.entries(data.counts)) {
          const node = document.querySelector(`#bucket-counts [data-bucket="${name}"] .count`);
          if (node) node.textContent = count.toLocaleString();
        }
        $("count-total").textContent = data.total.toLocaleString();
      })
      .catch(() => {});
  }

  function refreshSide() {
    refreshCounts();
    request("GET", urls.stats)
      .then((stats) => {
        showCounts(stats);
        const agreement = stats.agreement;
        const node = $("stat-agreement");
        node.textContent = agreement.rate === null ? "—" : `${Math.round(agreement.rate * 100)}%`;
        node.title =
          agreement.rate === null
            ? "No other reviewer has voted on your images yet"
            : `Others chose what you chose ${agreement.agreed} times out of ${agreement.compared}`;
      })
      .catch(() => {});
  }

  function showCounts(stats) {
    $("stat-today").textContent = stats.today.toLocaleString();
    $("stat-all").textContent = stats.all_time.toLocaleString();
  }

  // ------------------------------------------------------------------ keyboard and buttons

  function toggleHelp(show = el.help.hidden) {
    el.help.hidden = !show;
  }

  const KEYS = {
    r: () => decide("real"),
    f: () => decide("fake"),
    u: () => decide("unsure"),
    s: () => decide("skip"),
    z: undo,
    backspace: undo,
    h: toggleHeat,
    n: () => el.note.focus(),
    "?": () => toggleHelp(),
    escape: () => toggleHelp(false),
    "+": () => zoomCentre(1.25),
    "=": () => zoomCentre(1.25),
    "-": () => zoomCentre(0.8),
    0: fit,
    1: actualPixels,
  };
  const NO_REPEAT = new Set(["r", "f", "u", "s", "z", "backspace", "h"]);

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, textarea, select")) {
      if (event.target === el.note && (event.key === "Enter" || event.key === "Escape")) {
        event.preventDefault();
        el.note.blur();
      }
      return;
    }
    const key = event.key.toLowerCase();
    const action = KEYS[key];
    if (!action) return;
    event.preventDefault();
    if (event.repeat && NO_REPEAT.has(key)) return;
    if (key !== "?" && key !== "escape") toggleHelp(false);
    action();
  });

  document.querySelectorAll("[data-choice]").forEach((button) =>
    button.addEventListener("click", () => decide(button.dataset.choice)),
  );
  $("undo-button").addEventListener("click", undo);
  $("heat-button").addEventListener("click", toggleHeat);
  $("help-button").addEventListener("click", () => toggleHelp());
  el.help.addEventListener("click", (event) => event.target === el.help && toggleHelp(false));

  // ------------------------------------------------------------------ start

  if (desk.dataset.hasModel === "1") {
    openRequested();
    fill();
  } else {
    desk.dataset.state = "no-model";
  }
  refreshSide();
})();
