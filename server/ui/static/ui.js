// oml-server web page: plain JavaScript over the REST API, no build step and nothing loaded from elsewhere.
// Every piece of server data reaches the page through textContent or attributes, never as HTML.
"use strict";

(() => {
  const KEY_STORE = "oml-api-key";
  const VIEWS = ["galleries", "models", "jobs"];
  const ACTIVE_JOB_STATES = new Set(["queued", "running"]);
  const BUSY_MODEL_STATES = new Set(["loading", "reembedding"]);
  const POLL_MS = 1000;

  const state = {
    view: "galleries",
    galleries: [],
    gallery: null,        // the selected gallery's info
    queryFile: null,      // the image chosen or dropped for an image search
    searchSeq: 0,         // ignores replies of searches that a newer one replaced
    thumbUrls: [],        // object URLs of the shown thumbnails, released when replaced
    previewUrl: null,     // object URL of the query image preview
    models: [],
    jobsTimer: null,
    modelsTimer: null,
    activeJobIds: new Set(),
    finetuneJobs: {},     // gallery name -> id of its latest fine-tune job
    finetuneTimer: null,
  };

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- DOM helpers

  /** Build an element: h("a", {href: "#x", class: "c", text: "label"}, child, ...). Strings become text nodes. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") el.textContent = String(value);
      else if (name === "class") el.className = value;
      else if (name === "dataset") Object.assign(el.dataset, value);
      else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  function plural(n, word) {
    return `${Number(n).toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
  }

  function formatValue(value) {
    if (value === null || value === undefined) return "—";
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function formatTime(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString();
  }

  function releaseThumbs() {
    for (const url of state.thumbUrls) URL.revokeObjectURL(url);
    state.thumbUrls = [];
  }

  function setPreview(file) {
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = file ? URL.createObjectURL(file) : null;
    const preview = $("q-preview");
    if (state.previewUrl) preview.src = state.previewUrl;
    else preview.removeAttribute("src");
    preview.hidden = !file;
  }

  // ---------------------------------------------------------------- errors and notes

  /** Show a message in the error area at the top of the page; the same message again bumps a counter. */
  function showError(message) {
    const list = $("error-list");
    for (const item of list.children) {
      if (item.dataset.message === message) {
        const times = Number(item.dataset.times) + 1;
        item.dataset.times = String(times);
        item.querySelector(".times").textContent = `×${times}`;
        list.prepend(item);
        syncErrors();
        return;
      }
    }
    const item = h("li", {dataset: {message, times: "1"}},
      h("span", {class: "error-text", text: message}),
      h("span", {class: "times"}),
      h("button", {type: "button", class: "link dismiss", "aria-label": "dismiss this error",
                   onclick: () => { item.remove(); syncErrors(); }}, "✕"));
    list.prepend(item);
    while (list.children.length > 6) list.lastElementChild.remove();
    syncErrors();
  }

  function syncErrors() {
    $("errors").hidden = $("error-list").children.length === 0;
  }

  function clearErrors() {
    $("error-list").replaceChildren();
    syncErrors();
  }

  function note(id, message) {
    const el = $(id);
    el.replaceChildren(...(Array.isArray(message) ? message : [message]));
    el.hidden = false;
  }

  // ---------------------------------------------------------------- the API and its key

  class ApiError extends Error {
    constructor(status, detail, code) {
      super(detail);
      this.status = status;
      this.detail = detail;
      this.code = code;
      this.reported = false;
    }
  }

  /** Show an API error to the person (once) and hand it back for throwing. */
  function report(error, what) {
    if (!error.reported) {
      const where = error.status ? ` (${error.status}${error.code ? " " + error.code : ""})` : "";
      showError(`${what ? what + ": " : ""}${error.detail}${where}`);
      error.reported = true;
    }
    return error;
  }

  async function detailOf(reply) {
    const text = await reply.text().catch(() => "");
    try {
      const body = JSON.parse(text);
      let detail = body.detail;
      if (Array.isArray(detail)) detail = detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
      else if (detail !== undefined && typeof detail !== "string") detail = JSON.stringify(detail);
      return {detail: detail || reply.statusText || "request failed", code: body.error};
    } catch {
      return {detail: text.trim().slice(0, 300) || reply.statusText || "request failed", code: undefined};
    }
  }

  function storedKey() {
    return sessionStorage.getItem(KEY_STORE);
  }

  function updateKeyState() {
    const has = Boolean(storedKey());
    $("key-state").textContent = has ? "API key set" : "no API key";
    $("key-state").classList.toggle("ok", has);
    $("key-forget").hidden = !has;
    $("key-set").textContent = has ? "change key" : "set key";
  }

  let keyPrompt = null;
  let keyResolve = null;

  /** Ask for the API key in a small dialog; resolves true when one was entered, false when cancelled. One prompt
   * serves every request that needs it at the same time. */
  function askKey(reason) {
    if (keyPrompt) return keyPrompt;
    keyPrompt = new Promise((resolve) => { keyResolve = resolve; });
    $("key-reason").textContent = reason;
    $("key-input").value = "";
    $("key-dialog").showModal();
    $("key-input").focus();
    return keyPrompt;
  }

  function finishKeyPrompt(entered) {
    if (!keyPrompt) return;
    const resolve = keyResolve;
    keyPrompt = keyResolve = null;
    if ($("key-dialog").open) $("key-dialog").close();
    resolve(entered);
  }

  /**
   * Call the API: `json` (a body sent as JSON) or `form` (FormData, multipart). Sends the stored key as X-API-Key.
   * A 401/403 asks for the key and retries; any other non-2xx reply or a network error is shown in the error area
   * (prefixed with `what`) and thrown as an ApiError. `allow` lists statuses handed back instead of thrown.
   */
  async function api(method, path, {json, form, what, allow = [], blob = false} = {}) {
    for (;;) {
      const headers = {Accept: blob ? "*/*" : "application/json"};
      const key = storedKey();
      if (key) headers["X-API-Key"] = key;
      let body;
      if (json !== undefined) {
        headers["Content-Type"] = "application/json";
        body = JSON.stringify(json);
      } else if (form !== undefined) {
        body = form;
      }
      let reply;
      try {
        reply = await fetch(path, {method, headers, body, cache: "no-store"});
      } catch (err) {
        throw report(new ApiError(0, `network error (${err.message}): is the server running?`, "network"), what);
      }
      if (reply.status === 401 || reply.status === 403) {
        const {detail, code} = await detailOf(reply);
        if (reply.status === 403 && key) sessionStorage.removeItem(KEY_STORE);
        updateKeyState();
        const reason = reply.status === 403 && key ? `The key was refused: ${detail}.`
                                                   : `${what || "This action"} needs the server's API key: ${detail}.`;
        if (await askKey(reason)) continue;
        throw report(new ApiError(reply.status, detail, code), what);
      }
      if (!reply.ok && !allow.includes(reply.status)) {
        const {detail, code} = await detailOf(reply);
        throw report(new ApiError(reply.status, detail, code), what);
      }
      if (!reply.ok) return {status: reply.status, data: null};
      if (blob) return {status: reply.status, data: await reply.blob()};
      const text = await reply.text();
      try {
        return {status: reply.status, data: text ? JSON.parse(text) : null};
      } catch {
        throw report(new ApiError(reply.status, "the server's reply is not JSON", "bad_reply"), what);
      }
    }
  }

  /** Run an event handler; errors the API already showed stop quietly, anything else is shown too. */
  function guarded(fn) {
    return async (...args) => {
      try {
        await fn(...args);
      } catch (err) {
        if (!(err instanceof ApiError && err.reported)) {
          console.error(err);
          showError(`Unexpected problem in the page: ${err && err.message ? err.message : err}`);
        }
      }
    };
  }

  /** Disable `button` (and mark it busy) while `fn` runs. */
  async function busy(button, fn) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      return await fn();
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  const galleryPath = (name) => `/galleries/${encodeURIComponent(name)}`;
  // keys may hold '/' (archive members keep their folders); each segment is encoded on its own
  const itemPath = (name, key) => `${galleryPath(name)}/items/${key.split("/").map(encodeURIComponent).join("/")}`;

  // ---------------------------------------------------------------- views

  function route() {
    const parts = location.hash.replace(/^#/, "").split("/");
    const view = VIEWS.includes(parts[0]) ? parts[0] : "galleries";
    state.view = view;
    for (const section of document.querySelectorAll(".view")) section.hidden = section.dataset.view !== view;
    for (const link of document.querySelectorAll("[data-view-link]")) {
      if (link.dataset.viewLink === view) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (view === "galleries") {
      const wanted = parts.length > 1 && parts[1] ? decodeURIComponent(parts.slice(1).join("/")) : null;
      return loadGalleries().then(() => selectGallery(wanted));
    }
    if (view === "models") return loadModels();
    return loadJobs();
  }

  // ---------------------------------------------------------------- galleries

  async function loadGalleries() {
    const {data} = await api("GET", "/galleries", {what: "Loading galleries"});
    state.galleries = data.galleries;
    renderGalleryList();
    if (state.gallery) {
      const fresh = state.galleries.find((g) => g.name === state.gallery.name);
      if (fresh) {
        state.gallery = fresh;
        renderGalleryFacts(fresh);
      }
    }
  }

  function renderGalleryList() {
    const selected = state.gallery ? state.gallery.name : null;
    $("gallery-list").replaceChildren(...state.galleries.map((g) => h("li", {},
      h("a", {href: `#galleries/${encodeURIComponent(g.name)}`, class: "gallery-item",
              "aria-current": g.name === selected ? "true" : null, dataset: {gallery: g.name}},
        h("span", {class: "gallery-title"},
          h("strong", {text: g.name}),
          h("span", {class: `badge modality ${g.modality}`, text: g.modality})),
        h("span", {class: "gallery-meta"},
          h("span", {class: "count", text: plural(g.count, "item")}), " · ",
          h("span", {text: `${g.model} v${g.model_version}`}), " · ",
          h("span", {text: g.index})),
        g.reranker ? h("span", {class: "gallery-meta", text: `reranker: ${g.reranker}`}) : null))));
    $("gallery-empty").hidden = state.galleries.length > 0;
  }

  function renderGalleryFacts(g) {
    $("g-name").textContent = g.name;
    const facts = [["items", Number(g.count).toLocaleString()], ["model", `${g.model} v${g.model_version}`],
                   ["modality", g.modality], ["embedding", `${g.embedding_size}-d`], ["index", g.index],
                   ["reranker", g.reranker || "none"]];
    $("g-facts").replaceChildren(...facts.map(([term, value]) =>
      h("div", {}, h("dt", {text: term}), h("dd", {text: value, dataset: {fact: term}}))));
  }

  function selectGallery(name) {
    const wanted = name || (state.gallery ? state.gallery.name : null);
    const g = wanted ? state.galleries.find((x) => x.name === wanted) : null;
    if (wanted && !g && name) showError(`There is no gallery named ${JSON.stringify(name)}.`);
    const changed = !g || !state.gallery || state.gallery.name !== g.name || state.gallery.modality !== g.modality;
    state.gallery = g || null;
    renderGalleryList();
    $("gallery-none").hidden = Boolean(g);
    $("gallery-panel").hidden = !g;
    if (!g) return;
    renderGalleryFacts(g);
    const isImage = g.modality === "image";
    $("text-query").hidden = isImage;
    $("image-query").hidden = !isImage;
    $("image-adds").hidden = !isImage;
    $("text-items-form").hidden = isImage;
    $("rerank-wrap").hidden = !g.reranker;
    if (!g.reranker) $("q-rerank").checked = false;
    if (changed) {
      guarded(findFinetune)(g.name);
      state.searchSeq += 1;
      state.queryFile = null;
      releaseThumbs();
      setPreview(null);
      $("q-drop-text").textContent = "Drop an image here, or choose a file";
      $("q-image").value = "";
      $("results").hidden = true;
      $("results-grid").replaceChildren();
      $("add-result").hidden = true;
    }
  }

  async function runSearch() {
    const g = state.gallery;
    if (!g) return;
    const k = Number($("q-k").value);
    const rerank = Boolean(g.reranker) && $("q-rerank").checked;
    const what = `Search in ${g.name}`;
    let request;
    if (g.modality === "image") {
      if (!state.queryFile) {
        showError("Choose or drop a query image first.");
        return;
      }
      const form = new FormData();
      form.append("image", state.queryFile, state.queryFile.name);
      form.append("k", String(k));
      form.append("rerank", rerank ? "true" : "false");
      request = {form, what};
    } else {
      const text = $("q-text").value.trim();
      if (!text) {
        showError("Type a query text first.");
        $("q-text").focus();
        return;
      }
      request = {json: {text, k, rerank}, what};
    }
    const seq = ++state.searchSeq;
    const started = performance.now();
    const {data} = await busy($("search-button"), () => api("POST", `${galleryPath(g.name)}/search`, request));
    if (seq !== state.searchSeq) return;
    renderResults(g, data, performance.now() - started);
  }

  function renderResults(g, data, ms) {
    const hits = (data.results && data.results[0]) || [];
    releaseThumbs();
    const badge = $("rerank-badge");
    if (data.reranked) {
      badge.textContent = data.reranker ? `reranked by ${data.reranker.name} v${data.reranker.version}`
                                        : "reranked by the server's postprocessor";
      badge.className = "badge reranked";
    } else {
      badge.textContent = "not reranked";
      badge.className = "badge plain";
    }
    badge.dataset.reranked = String(Boolean(data.reranked));
    $("results-meta").textContent = `${plural(hits.length, "hit")} · ${data.model} v${data.model_version} · ` +
                                    `${Math.round(ms)} ms`;
    $("results-empty").hidden = hits.length > 0;
    $("results-grid").replaceChildren(...hits.map((hit, i) => hitCard(g, hit, i, Boolean(data.reranked))));
    $("results").hidden = false;
  }

  function hitCard(g, hit, rank, reranked) {
    const isImage = g.modality === "image";
    const thumb = isImage ? h("div", {class: "thumb loading"}, h("img", {alt: `item ${hit.key}`, hidden: true})) : null;
    const text = isImage ? null : h("p", {class: "hit-text loading", text: "…"});
    const payload = Object.entries(hit.payload || {});
    const fact = (term, value, cls) => h("div", {},
      h("dt", {text: term}), h("dd", {class: cls, title: value, text: value}));
    const card = h("article", {class: `hit ${g.modality}`, dataset: {key: hit.key}},
      thumb,
      h("div", {class: "hit-body"},
        h("div", {class: "hit-top"},
          h("span", {class: "rank", text: `#${rank + 1}`}),
          h("span", {class: "key", title: hit.key, text: hit.key}),
          reranked ? h("span", {class: "badge reranked small", text: "reranked"}) : null),
        text,
        h("dl", {class: "hit-facts"},
          fact(reranked ? "score" : "distance", Number(hit.distance).toFixed(4), "distance"),
          fact("label", formatValue(hit.label), "label")),
        payload.length ? h("dl", {class: "payload"}, payload.map(([name, value]) => fact(name, formatValue(value))))
                       : null));
    if (isImage) fillThumb(g.name, hit.key, thumb);
    else fillText(g.name, hit.key, text);
    return card;
  }

  async function fillThumb(gallery, key, box) {
    const img = box.querySelector("img");
    try {
      const {status, data} = await api("GET", `${itemPath(gallery, key)}/file`,
                                       {what: `Thumbnail of ${key}`, allow: [404], blob: true});
      if (status === 404) {
        box.classList.remove("loading");
        box.classList.add("missing");
        box.append(h("span", {text: "no stored file"}));
        return;
      }
      const url = URL.createObjectURL(data);
      state.thumbUrls.push(url);
      img.addEventListener("load", () => { box.classList.remove("loading"); img.hidden = false; }, {once: true});
      img.addEventListener("error", () => {
        box.classList.remove("loading");
        box.classList.add("missing");
        box.append(h("span", {text: "cannot display this file"}));
      }, {once: true});
      img.src = url;
    } catch (err) {
      box.classList.remove("loading");
      box.classList.add("missing");
      box.append(h("span", {text: "thumbnail failed"}));
      if (!(err instanceof ApiError)) throw err;
    }
  }

  async function fillText(gallery, key, box) {
    try {
      const {data} = await api("GET", itemPath(gallery, key), {what: `Text of ${key}`});
      box.textContent = data.text || "(no text stored)";
    } catch (err) {
      box.textContent = "(text unavailable)";
      if (!(err instanceof ApiError)) throw err;
    } finally {
      box.classList.remove("loading");
    }
  }

  function chooseQueryImage(file) {
    if (!file) return;
    state.queryFile = file;
    setPreview(file);
    $("q-drop-text").textContent = `${file.name}: drop or choose another`;
    guarded(runSearch)();
  }

  // ---------------------------------------------------------------- adding items and galleries

  function addedNote(data, status, what) {
    if (status === 202 && data.job_id) {
      const counted = data.accepted !== undefined
        ? ` (${plural(data.accepted, "image")}${data.skipped ? `, ${data.skipped} other members skipped` : ""})` : "";
      note("add-result", [`${what}${counted}: background job `, h("code", {text: data.job_id.slice(0, 8)}),
                          " started; ", h("a", {href: "#jobs", text: "follow it under Jobs"}), "."]);
      startJobsPolling();
    } else {
      note("add-result", `${what}: indexed ${plural(data.indexed, "item")}` +
                         (data.count !== null && data.count !== undefined ? `; the gallery holds ${data.count}.` : "."));
    }
    return loadGalleries();
  }

  async function uploadImages(event) {
    event.preventDefault();
    const g = state.gallery;
    const files = [...$("upload-files").files];
    if (!files.length) {
      showError("Choose one or more image files to upload.");
      return;
    }
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    const button = event.submitter || event.target.querySelector("button");
    const {status, data} = await busy(button, () => api("POST", `${galleryPath(g.name)}/items`,
                                                        {form, what: `Adding images to ${g.name}`}));
    $("upload-files").value = "";
    await addedNote(data, status, `${plural(files.length, "image")} sent`);
  }

  async function uploadArchive(event) {
    event.preventDefault();
    const g = state.gallery;
    const file = $("upload-archive").files[0];
    if (!file) {
      showError("Choose a .zip or .tar.gz archive to upload.");
      return;
    }
    const form = new FormData();
    form.append("archive", file, file.name);
    form.append("labels", $("archive-labels").checked ? "folder" : "none");
    const button = event.submitter || event.target.querySelector("button");
    const {status, data} = await busy(button, () => api("POST", `${galleryPath(g.name)}/items/archive`,
                                                        {form, what: `Adding ${file.name} to ${g.name}`}));
    $("upload-archive").value = "";
    await addedNote(data || {}, status, `${file.name} sent`);
  }

  function parseTextItems(raw) {
    const items = [];
    raw.split(/\r?\n/).forEach((line, i) => {
      if (!line.trim()) return;
      const parts = line.split(line.includes("\t") ? "\t" : "|").map((part) => part.trim());
      if (parts.length < 2 || !parts[0] || !parts[1]) {
        throw new Error(`line ${i + 1} needs "key | text", got ${JSON.stringify(line.slice(0, 60))}`);
      }
      const item = {key: parts[0], text: parts[1]};
      if (parts.length > 2 && parts[2] !== "") item.label = /^-?\d+$/.test(parts[2]) ? Number(parts[2]) : parts[2];
      items.push(item);
    });
    return items;
  }

  async function addTextItems(event) {
    event.preventDefault();
    const g = state.gallery;
    let items;
    try {
      items = parseTextItems($("text-items").value);
    } catch (err) {
      showError(`Adding items: ${err.message}`);
      return;
    }
    if (!items.length) {
      showError("Adding items: write at least one line \"key | text\".");
      return;
    }
    const button = event.submitter || event.target.querySelector("button");
    const {status, data} = await busy(button, () => api("POST", `${galleryPath(g.name)}/items`,
                                                        {json: {items}, what: `Adding items to ${g.name}`}));
    $("text-items").value = "";
    await addedNote(data, status, `${plural(items.length, "item")} sent`);
  }

  async function createGallery(event) {
    event.preventDefault();
    const body = {name: $("create-name").value.trim(), model: $("create-model").value,
                  index: $("create-index").value.trim() || "exact"};
    if ($("create-reranker").value) body.reranker = $("create-reranker").value;
    if (!body.model) {
      showError("Creating a gallery: there is no model to bind it to yet.");
      return;
    }
    const button = event.submitter || event.target.querySelector("button");
    await busy(button, () => api("POST", "/galleries", {json: body, what: `Creating gallery ${body.name}`}));
    $("create-form").reset();
    $("create-gallery").open = false;
    location.hash = `#galleries/${encodeURIComponent(body.name)}`;
  }

  function fillCreateForm() {
    const extractors = state.models.filter((m) => m.kind !== "reranker" && m.active_version !== null);
    const rerankers = state.models.filter((m) => m.kind === "reranker" && m.active_version !== null);
    const keep = $("create-model").value;
    $("create-model").replaceChildren(...extractors.map((m) =>
      h("option", {value: m.name, text: `${m.name} (${m.modality || "?"}, v${m.active_version})`})));
    if (keep && extractors.some((m) => m.name === keep)) $("create-model").value = keep;
    const keepReranker = $("create-reranker").value;
    $("create-reranker").replaceChildren(h("option", {value: "", text: "none"}), ...rerankers.map((m) =>
      h("option", {value: m.name, text: `${m.name} (reranks ${m.reranker ? m.reranker.extractor.name : "?"})`})));
    $("create-reranker").value = keepReranker;
  }

  // ---------------------------------------------------------------- models

  async function loadModels() {
    const {data} = await api("GET", "/models", {what: "Loading models"});
    state.models = data.models;
    renderModels();
    fillCreateForm();
    const busyNow = state.models.some((m) => (m.activating_version !== null && m.activating_version !== undefined) ||
                                             m.versions.some((v) => BUSY_MODEL_STATES.has(v.state)));
    clearTimeout(state.modelsTimer);
    state.modelsTimer = busyNow ? setTimeout(guarded(loadModels), POLL_MS) : null;
  }

  function renderModels() {
    $("models-empty").hidden = state.models.length > 0;
    $("models-list").replaceChildren(...state.models.map((m) => {
      const tags = [h("span", {class: "badge", text: m.kind || "extractor"})];
      if (m.modality) tags.push(h("span", {class: `badge modality ${m.modality}`, text: m.modality}));
      if (m.embedding_size) tags.push(h("span", {class: "badge", text: `${m.embedding_size}-d`}));
      const activating = m.activating_version !== null && m.activating_version !== undefined;
      return h("article", {class: "card model", dataset: {model: m.name}},
        h("header", {class: "model-head"},
          h("h2", {text: m.name}), ...tags,
          h("span", {class: "active-version", dataset: {activeVersion: String(m.active_version ?? "")}},
            m.active_version !== null ? `active version ${m.active_version}` : "no active version"),
          activating ? h("span", {class: "badge busy", text: `activating v${m.activating_version}…`}) : null),
        m.reranker ? h("p", {class: "muted small", text:
          `reranks ${m.reranker.extractor.name} v${m.reranker.extractor.version} · input: ${m.reranker.input} · ` +
          `top ${m.reranker.top_n}`}) : null,
        h("table", {class: "versions"},
          h("thead", {}, h("tr", {}, ["version", "state", "loaded", "", ""].map((t) => h("th", {text: t})))),
          h("tbody", {}, m.versions.map((v) => h("tr", {dataset: {version: String(v.version)},
                                                         class: v.active ? "active" : null},
            h("td", {text: `v${v.version}`}),
            h("td", {}, h("span", {class: `badge state ${v.state}`, text: v.state}),
              v.error ? h("div", {class: "version-error", text: v.error}) : null),
            h("td", {text: v.loaded ? "yes" : "no"}),
            h("td", {}, v.active ? h("span", {class: "badge ok", text: "active"}) : null),
            h("td", {class: "actions"}, v.active ? null : h("button", {
              type: "button", class: "secondary small", "aria-label": `Activate ${m.name} version ${v.version}`,
              disabled: activating && m.activating_version === v.version,
              onclick: guarded((event) => activate(m.name, v.version, event.currentTarget))}, "Activate")))))));
    }));
  }

  async function activate(name, version, button) {
    await busy(button, () => api("POST", `/models/${encodeURIComponent(name)}/activate`,
                                 {json: {version}, what: `Activating ${name} v${version}`}));
    await loadModels();
    startJobsPolling();  // an extractor's galleries are re-embedded by jobs
  }

  // ---------------------------------------------------------------- jobs

  function startJobsPolling() {
    if (!state.jobsTimer) state.jobsTimer = setTimeout(pollJobs, 100);
  }

  async function pollJobs() {
    state.jobsTimer = null;
    try {
      await loadJobs();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;  // already shown; stop polling until the next action
    }
  }

  async function loadJobs() {
    const {data} = await api("GET", "/jobs?limit=50", {what: "Loading jobs"});
    const jobs = data || [];
    renderJobs(jobs);
    const active = jobs.filter((job) => ACTIVE_JOB_STATES.has(job.state));
    const activeIds = new Set(active.map((job) => job.id));
    const finished = [...state.activeJobIds].some((id) => !activeIds.has(id));
    state.activeJobIds = activeIds;
    $("jobs-active").textContent = String(active.length);
    $("jobs-active").hidden = active.length === 0;
    if (finished) guarded(loadGalleries)();
    if (active.length && !state.jobsTimer) state.jobsTimer = setTimeout(pollJobs, POLL_MS);
  }

  function renderJobs(jobs) {
    $("jobs-empty").hidden = jobs.length > 0;
    $("jobs-list").replaceChildren(...jobs.map((job) => {
      const pct = Math.round(100 * Math.max(0, Math.min(1, Number(job.progress) || 0)));
      const bar = h("div", {class: "bar"});
      bar.style.width = `${pct}%`;
      return h("li", {class: `card job ${job.state}`, dataset: {job: job.id}},
        h("div", {class: "job-head"},
          h("span", {class: "badge", text: job.kind}),
          h("a", {href: `#galleries/${encodeURIComponent(job.gallery)}`, class: "job-gallery", text: job.gallery}),
          h("span", {class: `badge state ${job.state}`, text: job.state}),
          h("code", {class: "job-id", title: job.id, text: job.id.slice(0, 8)}),
          h("span", {class: "muted small", text: `started ${formatTime(job.created_at)} · updated ${formatTime(job.updated_at)}`})),
        h("div", {class: "progress", role: "progressbar", "aria-label": `job ${job.id.slice(0, 8)} progress`,
                  "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(pct)}, bar),
        h("div", {class: "job-numbers"},
          h("span", {text: `${Number(job.done).toLocaleString()} / ${Number(job.total).toLocaleString()} ` +
                           (job.kind === "finetune" ? `steps${job.phase ? ` · ${job.phase}` : ""}` : "items")}),
          h("span", {text: `${pct}%`})),
        job.error ? h("p", {class: "job-error", text: job.error}) : null);
    }));
  }

  // ---------------------------------------------------------------- fine-tune

  /** One line about a fine-tune job: state, phase, steps, the validation metric; at the end the gate's verdict. */
  function finetuneText(job) {
    const result = job.result || {};
    const progress = result.progress || {};
    const parts = [job.state];
    if (job.phase) parts.push(job.phase);
    if (progress.steps) parts.push(`step ${progress.step} / ${progress.steps}`);
    if (progress.metric) parts.push(`${progress.metric.name} ${progress.metric.value}`);
    let text = parts.join(" · ");
    if (result.decision) {
      text += ` — v${result.candidate_version} ${result.activated ? "activated" : "kept available"}: ${result.reason}`;
    } else if (job.error) {
      text += ` — ${job.error}`;
    }
    return text;
  }

  function renderFinetune(job) {
    const running = Boolean(job) && ACTIVE_JOB_STATES.has(job.state);
    $("finetune-button").disabled = running;
    $("finetune-cancel").hidden = !running;
    $("finetune-progress").hidden = !job;
    $("finetune-status").hidden = !job;
    if (!job) return;
    const pct = Math.round(100 * Math.max(0, Math.min(1, Number(job.progress) || 0)));
    $("finetune-progress").setAttribute("aria-valuenow", String(pct));
    $("finetune-progress").firstElementChild.style.width = `${pct}%`;
    $("finetune-status").textContent = finetuneText(job);
    $("finetune-status").dataset.state = job.state;
  }

  /** Show the gallery's latest fine-tune job (e.g. after a reload), if it has one. */
  async function findFinetune(name) {
    if (!state.finetuneJobs[name]) {
      const {data} = await api("GET", "/jobs?limit=100", {what: "Loading jobs"});
      const job = (data || []).find((j) => j.kind === "finetune" && j.gallery === name);
      if (job) state.finetuneJobs[name] = job.id;
    }
    await pollFinetune();
  }

  async function pollFinetune() {
    clearTimeout(state.finetuneTimer);
    state.finetuneTimer = null;
    const g = state.gallery;
    const id = g ? state.finetuneJobs[g.name] : null;
    if (!id) {
      renderFinetune(null);
      return;
    }
    const {data} = await api("GET", `/jobs/${encodeURIComponent(id)}`, {what: "Fine-tune progress"});
    if (!state.gallery || state.gallery.name !== g.name) return;
    renderFinetune(data);
    if (ACTIVE_JOB_STATES.has(data.state)) state.finetuneTimer = setTimeout(guarded(pollFinetune), POLL_MS);
    else if (data.result && data.result.activated) guarded(loadGalleries)();  // re-embedded with the new version
  }

  async function startFinetune() {
    const g = state.gallery;
    if (!g) return;
    const {data} = await busy($("finetune-button"), () => api(
      "POST", `/models/${encodeURIComponent(g.model)}/finetune`,
      {json: {gallery: g.name}, what: `Fine-tuning ${g.model} on ${g.name}`}));
    state.finetuneJobs[g.name] = data.job_id;
    await pollFinetune();
    startJobsPolling();
  }

  async function cancelFinetune() {
    const id = state.gallery ? state.finetuneJobs[state.gallery.name] : null;
    if (!id) return;
    await busy($("finetune-cancel"), () => api("DELETE", `/jobs/${encodeURIComponent(id)}`,
                                               {what: "Cancelling the fine-tune"}));
    await pollFinetune();
  }

  // ---------------------------------------------------------------- wiring

  function wire() {
    window.addEventListener("hashchange", guarded(route));
    $("errors-clear").addEventListener("click", clearErrors);
    $("galleries-refresh").addEventListener("click", guarded(loadGalleries));
    $("models-refresh").addEventListener("click", guarded(loadModels));
    $("jobs-refresh").addEventListener("click", guarded(loadJobs));
    $("search-form").addEventListener("submit", (event) => { event.preventDefault(); guarded(runSearch)(); });
    $("q-image").addEventListener("change", () => chooseQueryImage($("q-image").files[0]));
    const zone = $("dropzone");
    zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      chooseQueryImage(event.dataTransfer.files[0]);
    });
    $("upload-form").addEventListener("submit", guarded(uploadImages));
    $("archive-form").addEventListener("submit", guarded(uploadArchive));
    $("text-items-form").addEventListener("submit", guarded(addTextItems));
    $("create-form").addEventListener("submit", guarded(createGallery));
    $("finetune-button").addEventListener("click", guarded(startFinetune));
    $("finetune-cancel").addEventListener("click", guarded(cancelFinetune));
    $("create-gallery").addEventListener("toggle", () => { if ($("create-gallery").open) guarded(loadModels)(); });

    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORE, key);
      updateKeyState();
      finishKeyPrompt(true);
    });
    $("key-cancel").addEventListener("click", () => finishKeyPrompt(false));
    $("key-dialog").addEventListener("cancel", () => finishKeyPrompt(false));
    $("key-dialog").addEventListener("close", () => finishKeyPrompt(false));
    $("key-set").addEventListener("click", () => askKey("Enter the server's API key; it is kept in this tab only."));
    $("key-forget").addEventListener("click", () => { sessionStorage.removeItem(KEY_STORE); updateKeyState(); });
  }

  document.addEventListener("DOMContentLoaded", () => {
    wire();
    updateKeyState();
    guarded(route)();
    if (state.view !== "jobs") guarded(loadJobs)();
    guarded(loadModels)();
  });
})();
