// The review desk: keyboard-first, one image at a time, the next ones already claimed and loaded.
//
// The screen holds up to BUFFER leased items (items[0] is on screen). A decision shows the next
// item at once and is saved in the background; every state-changing request goes through one
// ordered chain, so an undo always follows the decision it undoes. Plain JS, no dependencies.
//
// What the record can trust: a decision counts only for the item on screen, once its picture has
// been drawn for MIN_DISPLAY_MS; a key pressed earlier is dropped, never queued for the next item.
// Each decision carries an idempotency key and waits in localStorage until the server has it, so
// a reload or a closed tab re-sends it (the server stores it once) and leaving warns meanwhile.
"use strict";

(() => {
  const desk = document.getElementById("desk");
  if (!desk) return;

  const BUFFER = 3;
  const RETRY_EMPTY_MS = 30000;
  const RETRY_SEND_MS = 3000;
  const RECENT = 4;
  const MIN_DISPLAY_MS = Number(desk.dataset.minDisplayMs || 150);
  const STORE_KEY = `realfake.desk.unsent.${desk.dataset.user || "me"}`;
  const urls = JSON.parse(desk.dataset.urls);
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const el = {
    viewer: $("viewer"), stage: $("stage"), photo: $("photo"), heat: $("heat"),
    message: $("viewer-message"), end: $("end"), recent: $("recent"), title: $("item-title"),
    ahead: $("ahead"), legend: $("heat-legend"), opacity: $("heat-opacity"),
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
    drawn: [],            // every image id whose picture was drawn, in order
    drawnId: null,        // the item on screen once its picture is drawn, and since when
    drawnAt: 0,
    accepted: [],         // {image_id, choice, shownFor}: decisions taken on this screen
    ignored: 0,           // decision keys and clicks dropped (too early, or nothing on screen)
    unsent: loadUnsent(), // decisions the server has not confirmed (mirrored in localStorage)
    counts: null,         // open items per bucket (other filters applied), for the end screen
    left: null,           // what an empty claim said is left for others
    skippedAgain: false,  // serve the items I skipped twice too (asked on the end screen)
    view: { scale: 1, x: 0, y: 0, fitted: true },
  };
  for (const entry of state.unsent) state.saving.add(entry.image_id);
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
    return [...new Set([...heldIds(), ...state.saving])].slice(0, 8); // the server's limit
  }

  function fill() {
    if (state.filling || state.exhausted || state.items.length >= BUFFER) return;
    state.filling = true;
    const generation = state.generation;
    enqueue(() =>
      request("POST", urls.claim, {
        filters: state.filters,
        holding: holding(),
        skipped_again: state.skippedAgain,
      }).then(
        (data) => {
          state.filling = false;
          if (generation !== state.generation) {
            if (data.item) release([data.item.image_id]);
            fill();
            return;
          }
          if (!data.item) {
            state.exhausted = true;
            state.left = data.left || null;
            if (!state.items.length) setTimeout(retryEmpty, RETRY_EMPTY_MS);
            render();
            refreshCounts();
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

  function retryEmpty(now = false) {
    if (!state.exhausted) return;
    state.exhausted = false;
    if (now) render();
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

  // A decision counts only for the item whose picture has been on screen MIN_DISPLAY_MS.
  function decide(choice) {
    const item = state.items[0];
    const shownFor = performance.now() - state.drawnAt;
    if (!item || state.drawnId !== item.image_id || shownFor < MIN_DISPLAY_MS) {
      state.ignored += 1;
      desk.dataset.ignored = String(state.ignored);
      return;
    }
    const entry = {
      image_id: item.image_id,
      choice,
      note: el.note.value.trim(),
      model_version_id: item.prediction ? item.prediction.model_version_id : null,
      idempotency_key: newKey(),
      file_name: item.file_name,
      thumbnail: item.urls.thumbnail,
    };
    state.items.shift();
    state.drawnId = null;
    desk.dataset.ready = "";
    el.photo.dataset.imageId = ""; // the same item served again (a skip) is drawn again
    state.accepted.push({ image_id: item.image_id, choice, shownFor });
    state.saving.add(item.image_id);
    remember(entry);
    el.note.value = "";
    addRecent(entry);
    render();
    send(entry, item);
    fill();
  }

  function send(entry, item = null) {
    const body = {
      image_id: entry.image_id,
      choice: entry.choice,
      note: entry.note,
      model_version_id: entry.model_version_id,
      idempotency_key: entry.idempotency_key,
    };
    enqueue(() =>
      request("POST", urls.decide, body).then(
        (data) => {
          settle(entry, "saved");
          state.decided += 1;
          showCounts(data.stats);
          if (state.decided % 10 === 0) refreshSide(); // agreement too, now and then
          else refreshCounts();
          if (state.exhausted) retryEmpty(); // a skip comes back once it is saved
        },
        (error) => {
          if (!error.status || error.status >= 500 || error.status === 429) {
            entry.retrying = true;
            markRecent(entry, "retrying");
            setTimeout(() => send(entry, item), RETRY_SEND_MS); // same key: stored once
            return;
          }
          settle(entry, "not saved");
          toast(`Not saved: ${error.message}`, "error");
          if (error.status === 400 && item) {
            add(item, true); // bad input: the item and its note come back, nothing is lost
            el.note.value = entry.note;
          } else {
            fill();
          }
        },
      ),
    );
  }

  function settle(entry, outcome) {
    forget(entry);
    state.saving.delete(entry.image_id);
    markRecent(entry, outcome);
  }

  function newKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // ------------------------------------------------------------------ unsent decisions

  function loadUnsent() {
    try {
      const stored = JSON.parse(localStorage.getItem(STORE_KEY) || "[]");
      return Array.isArray(stored) ? stored : [];
    } catch {
      return [];
    }
  }

  // Read, change, write: another tab of the same reviewer keeps its own entries in the list.
  function persist(change = (stored) => stored) {
    try {
      const stored = change(loadUnsent());
      if (stored.length) localStorage.setItem(STORE_KEY, JSON.stringify(stored));
      else localStorage.removeItem(STORE_KEY);
    } catch {
      // storage full or disabled: the decision is still sent, it just would not survive a reload
    }
    desk.dataset.unsent = String(state.unsent.length);
  }

  function remember(entry) {
    state.unsent.push(entry);
    persist((stored) => [...stored, entry]);
  }

  function forget(entry) {
    const other = (item) => item.idempotency_key !== entry.idempotency_key;
    state.unsent = state.unsent.filter(other);
    persist((stored) => stored.filter(other));
  }

  function resendUnsent() {
    persist();
    for (const entry of state.unsent) {
      addRecent(entry, "re-sending");
      send(entry);
    }
  }

  window.addEventListener("beforeunload", (event) => {
    if (!state.unsent.length) return;
    event.preventDefault();
    event.returnValue = ""; // the browser shows its own "leave this page?" question
  });

  // ------------------------------------------------------------------ recent decisions

  // The stamp of a decision belongs to the image it was made on: a row with its thumbnail.
  function addRecent(entry, status = "saving") {
    const li = document.createElement("li");
    li.dataset.key = entry.idempotency_key;
    li.dataset.imageId = String(entry.image_id);
    li.dataset.choice = entry.choice;
    const thumb = document.createElement("img");
    thumb.src = entry.thumbnail;
    thumb.alt = "";
    const name = span(entry.file_name, "recent-name");
    const word = { real: "REAL", fake: "FAKE", unsure: "UNSURE", skip: "SKIPPED" }[entry.choice];
    li.append(thumb, span(word, `badge ${entry.choice}`), name, span(status, "recent-status"));
    li.title = `${entry.file_name}: ${word}`;
    el.recent.prepend(li);
    while (el.recent.children.length > RECENT) el.recent.lastElementChild.remove();
  }

  function markRecent(entry, status) {
    const li = el.recent.querySelector(`li[data-key="${entry.idempotency_key}"]`);
    if (!li) return;
    li.querySelector(".recent-status").textContent = status;
    li.dataset.status = status;
  }

  function undo() {
    // An undo goes after the decisions in flight; one the network lost is not saved yet, and an
    // undo now would revert the decision before it.
    if (state.unsent.some((entry) => entry.retrying)) {
      toast("Your last decision is not saved yet (the network is down): undo once it is.", "error");
      return;
    }
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
    el.end.hidden = true;
    if (!item) {
      desk.dataset.state = state.exhausted ? "empty" : "loading";
      el.message.textContent = state.exhausted ? "" : "Loading the queue…";
      if (state.exhausted) renderEnd();
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

  // Nothing left for these filters: say what is left where, with a way to each.
  function renderEnd() {
    const list = $("end-options");
    list.replaceChildren();
    const option = (textContent, label, action) => {
      const li = document.createElement("li");
      li.append(span(textContent, "end-text"));
      if (label) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = label;
        button.addEventListener("click", action);
        li.append(button);
      }
      list.append(li);
    };
    const left = state.left || { leased_to_others: 0, skipped: 0 };
    const minutes = Number(desk.dataset.leaseMinutes || 5);
    if (left.leased_to_others) {
      option(
        `${plural(left.leased_to_others, "item")} held by other reviewers right now; ` +
          `back in the queue if not decided within ${minutes} min.`,
        "Check again",
        () => retryEmpty(true),
      );
    }
    if (left.skipped) {
      option(
        `${plural(left.skipped, "item")} you skipped twice, left to other reviewers.`,
        "Review them again",
        () => {
          state.skippedAgain = true;
          retryEmpty(true);
        },
      );
    }
    for (const [name, count] of Object.entries(state.counts || {})) {
      if (!count || name === state.filters.bucket) continue;
      const title = bucketTitle(name);
      option(`${title}: ${plural(count, "open item")}.`, `Review ${title}`, () => chooseBucket(name));
    }
    if (state.filters.bucket && state.counts) {
      const total = Object.values(state.counts).reduce((a, b) => a + b, 0);
      if (total) option(`All buckets: ${plural(total, "open item")}.`, "Review all buckets", () => chooseBucket(""));
    }
    if (!list.children.length) option("Nothing is left for anyone with these filters.", "", null);
    el.end.hidden = false;
  }

  function plural(count, noun) {
    return `${count.toLocaleString()} ${noun}${count === 1 ? "" : "s"}`;
  }

  function bucketTitle(name) {
    const node = document.querySelector(`#bucket-counts [data-bucket="${name}"] .title`);
    return node ? node.textContent : name;
  }

  function chooseBucket(name) {
    el.filters.elements.bucket.value = name;
    applyFilters();
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
      el.photo.alt = `${item.file_name}, from dataset ${item.dataset} (${item.split} split), under review`;
      state.drawnId = null;
      desk.dataset.ready = "";
      el.photo.src = item.urls.image;
      el.heat.hidden = true;
      el.heat.removeAttribute("src");
      el.heat.alt = `Heatmap of ${item.file_name}`;
      fit();
      whenDrawn(item);
    }
    el.title.textContent = `${item.file_name} · #${item.image_id} · ${item.dataset}/${item.split}`;
    if (state.heatOn) loadHeat(item);
  }

  // Marks the item as drawn once its picture is decoded and painted (two frames later).
  function whenDrawn(item) {
    const id = String(item.image_id);
    const painted = () =>
      requestAnimationFrame(() =>
        requestAnimationFrame(() => {
          if (el.photo.dataset.imageId !== id || !state.items[0]) return;
          if (String(state.items[0].image_id) !== id) return;
          state.drawnId = item.image_id;
          state.drawnAt = performance.now();
          state.drawn.push(item.image_id);
          desk.dataset.drawn = id;
          const drawnAt = state.drawnAt;
          setTimeout(() => {
            if (state.drawnId === item.image_id && state.drawnAt === drawnAt) desk.dataset.ready = id;
          }, MIN_DISPLAY_MS);
        }),
      );
    // A picture that cannot be decoded is still "shown": the reviewer can skip it.
    (el.photo.decode ? el.photo.decode() : Promise.resolve()).then(painted, painted);
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
      if (event.target.closest(".end")) return; // the end screen scrolls
      event.preventDefault();
      const box = el.viewer.getBoundingClientRect();
      zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
    },
    { passive: false },
  );

  let drag = null;
  el.viewer.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || event.target.closest("button, .heat-legend, .end")) return;
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
    el.legend.hidden = !state.heatOn;
    const item = state.items[0];
    if (!state.heatOn || !item) {
      el.heat.hidden = true;
      return;
    }
    loadHeat(item);
  }

  // The job worker computes a heatmap the first time it is asked for: 202 until then.
  function loadHeat(item, retry = state.heatFailed === item.image_id, polling = false) {
    const cached = state.heatCache.get(item.image_id);
    if (cached) {
      showHeat(item, cached);
      return;
    }
    if (state.heatLoading === item.image_id && !polling) return; // already asked, still waiting
    state.heatLoading = item.image_id;
    heatStatus("Computing the heatmap…", true);
    const url = retry ? `${item.urls.heatmap}?retry=1` : item.urls.heatmap;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(async (response) => {
        if (response.status === 202) return null;
        if (!response.ok) {
          const data = await response.json().catch(() => ({}));
          throw new Error(data.message || `heatmap: ${response.status} ${response.statusText}`);
        }
        return response.blob();
      })
      .then((blob) => {
        if (!blob) {
          const onScreen = state.heatOn && state.items[0] && state.items[0].image_id === item.image_id;
          if (onScreen) setTimeout(() => loadHeat(item, false, true), 1000);
          else state.heatLoading = null;
          return;
        }
        state.heatLoading = null;
        const url = URL.createObjectURL(blob);
        state.heatCache.set(item.image_id, url);
        state.heatFailed = null;
        showHeat(item, url);
      })
      .catch((error) => {
        state.heatLoading = null;
        state.heatOn = false;
        state.heatFailed = item.image_id; // the next H asks for a new try
        el.heatState.hidden = true;
        el.legend.hidden = true;
        heatStatus("", false);
        toast(error.message, "error");
      });
  }

  function heatStatus(message, busy) {
    el.heatState.textContent = message || "Heatmap";
    el.heatState.classList.toggle("busy", busy);
    desk.dataset.heat = busy ? "computing" : state.heatOn ? "on" : "off";
  }

  function showHeat(item, url) {
    if (!state.heatOn || !state.items[0] || state.items[0].image_id !== item.image_id) return;
    heatStatus("Heatmap", false);
    el.heat.src = url;
    el.heat.hidden = false;
    el.heat.decode().then(
      () => (desk.dataset.heat = "shown"),
      () => {},
    );
  }

  function applyOpacity() {
    el.heat.style.opacity = String(Number(el.opacity.value) / 100);
    $("heat-opacity-value").textContent = `${el.opacity.value}%`;
  }
  el.opacity.addEventListener("input", applyOpacity);
  applyOpacity();

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
        state.counts = data.counts;
        desk.dataset.countsVersion = String(Number(desk.dataset.countsVersion || 0) + 1);
        if (state.exhausted && !state.items.length) renderEnd();
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
    // Space and Enter would press a focused decision button: they never decide.
    if ((event.key === " " || event.key === "Enter") && event.target.closest("[data-choice]")) {
      event.preventDefault();
      return;
    }
    if (event.target.closest("input:not([type=range]), textarea, select")) {
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
    button.addEventListener("click", (event) => {
      button.blur();
      if (event.detail === 0) return; // a click made by a key (Space, Enter), not the mouse
      decide(button.dataset.choice);
    }),
  );
  // Buttons never take the focus from a mouse click: the next key goes to the desk, not to them.
  desk.querySelectorAll("button").forEach((button) =>
    button.addEventListener("mousedown", (event) => event.preventDefault()),
  );
  $("undo-button").addEventListener("click", undo);
  $("heat-button").addEventListener("click", toggleHeat);
  $("help-button").addEventListener("click", () => toggleHelp());
  el.help.addEventListener("click", (event) => event.target === el.help && toggleHelp(false));

  // ------------------------------------------------------------------ start

  if (desk.dataset.hasModel === "1") {
    resendUnsent(); // first in the chain: their leases end before the first claim
    openRequested();
    fill();
  } else {
    desk.dataset.state = "no-model";
  }
  refreshSide();
})();
