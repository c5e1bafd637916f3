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
  const viewerNeighbours = document.getElementById("viewer-neighbours");
  const summary = document.getElementById("query-summary");
  const summaryThumb = document.getElementById("summary-thumb");
  const summaryText = document.getElementById("summary-text");
  const phone = window.matchMedia("(max-width: 640px)");
  // enlarged gallery images: at least this many times their own size (crisp pixels), more when the screen allows
  const MIN_ZOOM = 3;

  let queryFile = null;
  let maxUploadBytes = null;
  let shown = [];  // the hits on the page, in rank order
  let viewing = -1;  // the index in `shown` of the enlarged image

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

  function collapse(on) {
    form.classList.toggle("collapsed", on);
    summary.hidden = !on;
  }
  document.getElementById("edit-query").addEventListener("click", () => collapse(false));

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

  function imageUrl(hit) {
    return TOKEN ? `${hit.image_url}?token=${encodeURIComponent(TOKEN)}` : hit.image_url;
  }

  function personText(pid) {
    return pid === null ? "person ?" : `person ${pid}`;
  }

  // the enlarged view: the image at MIN_ZOOM times its size or more (whole pixels, crisp), its neighbours
  function fitZoom() {
    const w = viewerImage.naturalWidth, h = viewerImage.naturalHeight;
    if (!w || !h) return;
    const room = Math.floor(Math.min((window.innerHeight * 0.62) / h, (window.innerWidth * 0.7) / w));
    const zoom = Math.max(MIN_ZOOM, room);
    viewerImage.style.width = `${w * zoom}px`;
    viewerImage.style.height = `${h * zoom}px`;
  }
  viewerImage.addEventListener("load", fitZoom);

  function view(index) {
    if (index < 0 || index >= shown.length) return;
    viewing = index;
    const hit = shown[index];
    viewerImage.style.width = viewerImage.style.height = "";
    viewerImage.src = imageUrl(hit);
    viewerImage.alt = `gallery image ${hit.id}: ${personText(hit.pid)}, ${hit.path}`;
    viewerCaption.textContent = `#${hit.rank}  ${personText(hit.pid)}  camera ${hit.camera}  ` +
      `${hit.path}  score ${hit.score.toFixed(3)}`;
    document.getElementById("viewer-prev").disabled = index === 0;
    document.getElementById("viewer-next").disabled = index === shown.length - 1;
    viewerNeighbours.replaceChildren(...shown.slice(Math.max(0, index - 2), index + 3).map((other) => {
      const li = document.createElement("li");
      const thumb = document.createElement("img");
      thumb.src = imageUrl(other);
      thumb.alt = `#${other.rank} ${personText(other.pid)}`;
      thumb.title = thumb.alt;
      if (other === hit) li.classList.add("current");
      thumb.addEventListener("click", () => view(shown.indexOf(other)));
      li.append(thumb);
      return li;
    }));
    if (!viewer.open) viewer.showModal();
  }
  document.getElementById("viewer-prev").addEventListener("click", () => view(viewing - 1));
  document.getElementById("viewer-next").addEventListener("click", () => view(viewing + 1));
  viewer.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") view(viewing - 1);
    if (event.key === "ArrowRight") view(viewing + 1);
  });

  // a gallery image as the next query: its person id is known, so the correct matches are marked
  document.getElementById("viewer-search").addEventListener("click", async () => {
    const hit = shown[viewing];
    const response = await fetch(imageUrl(hit), { headers: AUTH });
    if (!response.ok) {
      showMessage(`Error ${response.status}: the gallery image cannot be read.`, "error");
      return;
    }
    const blob = await response.blob();
    setQuery(new File([blob], hit.path.split("/").pop(), { type: blob.type || "image/jpeg" }));
    queryPid.value = hit.pid === null ? "" : String(hit.pid);
    modality.value = hit.modality;
    viewer.close();
    form.requestSubmit();
  });

  function card(hit, index) {
    const li = document.createElement("li");
    li.className = "result-card";
    li.dataset.id = String(hit.id);
    const known = queryPid.value !== "" && hit.pid !== null;
    if (known) li.classList.add(Number(queryPid.value) === hit.pid ? "correct" : "wrong");

    const img = document.createElement("img");
    img.src = imageUrl(hit);
    img.alt = `gallery image ${hit.id}: ${personText(hit.pid)}, ${hit.path}`;
    img.loading = "lazy";
    img.tabIndex = 0;
    img.title = "click to enlarge";
    img.addEventListener("click", () => view(index));
    img.addEventListener("keydown", (event) => { if (event.key === "Enter") view(index); });

    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = `#${hit.rank}`;

    const person = document.createElement("span");
    person.className = "person";
    person.textContent = personText(hit.pid) + (known ? (li.classList.contains("correct") ? " \u2713" : " \u2717") : "");

    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `score ${hit.score.toFixed(3)}`;

    const camera = document.createElement("span");
    camera.className = "camera";
    camera.textContent = `camera ${hit.camera} \u00b7 ${hit.modality}`;

    const name = document.createElement("span");
    name.className = "name";
    name.textContent = hit.path;  // below the image root: the identity and camera folders say who and where

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
      shown = body.results;
      results.replaceChildren(...body.results.map(card));
      resultsTitle.hidden = false;
      let verdict = "";
      if (queryPid.value !== "") {
        const hitRank = body.results.findIndex((r) => r.pid === Number(queryPid.value));
        verdict = hitRank >= 0 ? ` \u2014 person ${queryPid.value} found at rank ${hitRank + 1}`
          : ` \u2014 person ${queryPid.value} not in the top ${body.results.length}`;
      }
      resultsTitle.textContent =
        `Ranked gallery: top ${body.results.length} of ${body.gallery_size} for the ${body.query_modality} query` +
        (body.rerank ? " (re-ranked)" : "") +
        (body.threshold ? `, above the ${body.threshold.text}` : "") + verdict;
      summaryThumb.src = preview.src;
      summaryText.textContent = `${queryFile.name} \u00b7 ${modality.value} \u00b7 top ${topk.value}` +
        (queryPid.value !== "" ? ` \u00b7 person ${queryPid.value}` : "");
      if (phone.matches) collapse(true);  // on a phone the results get the screen; the query is one line
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
