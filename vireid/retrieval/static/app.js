// The vireid search page: send one query image to POST /api/search and show the ranked gallery.
// A service started with a token is opened as /?token=TOKEN; the page sends it with every API request.
const TOKEN = new URLSearchParams(window.location.search).get("token");
const AUTH = TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
// Everything from the server is written with textContent / attributes, never as HTML.
"use strict";

(function () {
  const form = document.getElementById("search-form");
  const dropZone = document.getElementById("drop-zone");
  const input = document.getElementById("image-input");
  const preview = document.getElementById("query-preview");
  const hint = document.getElementById("drop-hint");
  const modality = document.getElementById("modality");
  const topk = document.getElementById("topk");
  const rerank = document.getElementById("rerank");
  const button = document.getElementById("search-button");
  const message = document.getElementById("message");
  const results = document.getElementById("results");
  const resultsTitle = document.getElementById("results-title");
  const galleryInfo = document.getElementById("gallery-info");
  const queryPid = document.getElementById("query-pid");
  const viewer = document.getElementById("viewer");
  const viewerImage = document.getElementById("viewer-image");
  const viewerCaption = document.getElementById("viewer-caption");

  let queryFile = null;
  let maxUploadBytes = null;

  function showMessage(text, kind) {
    message.textContent = text;
    message.className = kind;
    message.hidden = false;
  }

  function clearMessage() {
    message.hidden = true;
    message.textContent = "";
  }

  function formatBytes(n) {
    return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.ceil(n / 1024) + " kB";
  }

  function setQuery(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith("image/")) {
      showMessage(`${file.name} is not an image (${file.type}).`, "error");
      return;
    }
    if (maxUploadBytes !== null && file.size > maxUploadBytes) {
      showMessage(`${file.name} is ${formatBytes(file.size)}; the limit is ${formatBytes(maxUploadBytes)}.`, "error");
      return;
    }
    clearMessage();
    queryFile = file;
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    hint.textContent = file.name;
    button.disabled = false;
  }

  input.addEventListener("change", () => setQuery(input.files[0]));

  ["dragenter", "dragover"].forEach((type) =>
    dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    })
  );
  ["dragleave", "drop"].forEach((type) =>
    dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      dropZone.classList.remove("dragging");
    })
  );
  dropZone.addEventListener("drop", (event) => {
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) setQuery(files[0]);
  });

  function card(hit) {
    const li = document.createElement("li");
    li.className = "result-card";
    li.dataset.id = String(hit.id);
    const known = queryPid.value !== "" && hit.pid !== null;
    if (known) li.classList.add(Number(queryPid.value) === hit.pid ? "correct" : "wrong");

    const img = document.createElement("img");
    img.src = TOKEN ? `${hit.image_url}?token=${encodeURIComponent(TOKEN)}` : hit.image_url;
    img.alt = `gallery image ${hit.id}: person ${hit.pid === null ? "unknown" : hit.pid}, ${hit.name}`;
    img.loading = "lazy";
    img.tabIndex = 0;
    img.title = "click to enlarge";
    const open = () => {
      viewerImage.src = img.src;
      viewerImage.alt = img.alt;
      viewerCaption.textContent = `#${hit.rank}  person ${hit.pid === null ? "?" : hit.pid}  camera ${hit.camera}  ` +
        `${hit.name}  score ${hit.score.toFixed(3)}`;
      viewer.showModal();
    };
    img.addEventListener("click", open);
    img.addEventListener("keydown", (event) => { if (event.key === "Enter") open(); });

    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = `#${hit.rank}`;

    const person = document.createElement("span");
    person.className = "person";
    person.textContent = `person ${hit.pid === null ? "?" : hit.pid}` + (known ? (li.classList.contains("correct") ? " \u2713" : " \u2717") : "");

    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `score ${hit.score.toFixed(3)}`;

    const camera = document.createElement("span");
    camera.className = "camera";
    camera.textContent = `camera ${hit.camera} \u00b7 ${hit.modality}`;

    const name = document.createElement("span");
    name.className = "name";
    name.textContent = hit.name;

    li.append(rank, img, person, score, camera, name);
    return li;
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
      return JSON.stringify(body.detail);
    } catch (e) {
      return response.statusText || "request failed";
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!queryFile) {
      showMessage("Choose or drop a query image first.", "error");
      return;
    }
    const data = new FormData();
    data.append("image", queryFile, queryFile.name);
    data.append("modality", modality.value);
    data.append("topk", topk.value);
    data.append("rerank", rerank.checked ? "true" : "false");

    button.disabled = true;
    results.setAttribute("aria-busy", "true");
    showMessage("Searching\u2026", "info");
    try {
      const response = await fetch("/api/search", { method: "POST", body: data, headers: AUTH });
      if (!response.ok) {
        showMessage(`Error ${response.status}: ${await errorText(response)}`, "error");
        return;
      }
      const body = await response.json();
      results.replaceChildren(...body.results.map(card));
      resultsTitle.hidden = false;
      resultsTitle.textContent =
        `Ranked gallery: top ${body.results.length} of ${body.gallery_size} for the ${body.query_modality} query` +
        (body.rerank ? " (re-ranked)" : "") +
        (body.threshold ? `, above the ${body.threshold.text}` : "");
      if (body.threshold && !body.match) {
        showMessage(`No match: no gallery image is above the ${body.threshold.text}.`, "info");
      } else {
        clearMessage();
      }
    } catch (e) {
      showMessage(`The service cannot be reached (${e.message}).`, "error");
    } finally {
      button.disabled = false;
      results.removeAttribute("aria-busy");
    }
  });

  fetch("/api/health", { headers: AUTH })
    .then((response) => (response.ok ? response.json() : Promise.reject(new Error(response.statusText))))
    .then((health) => {
      maxUploadBytes = health.max_upload_bytes;
      topk.max = String(health.max_topk);
      if (Number(topk.value) > health.max_topk) topk.value = String(health.max_topk);
      modality.value = health.default_query_modality;
      const model = health.model;
      galleryInfo.textContent =
        `Gallery: ${health.gallery_size} images (${Object.entries(health.index.modalities)
          .map(([m, n]) => `${n} ${m}`)
          .join(", ")}) \u00b7 model ${model.name} (${model.arch}), input ${model.input_size.join(" \u00d7 ")}`;
    })
    .catch((e) => {
      galleryInfo.textContent = `The service is not available (${e.message}).`;
    });
})();
