// metalab ui: the little JavaScript the server-rendered pages use.
// Charts, previews and logs load only when they scroll into view
// (IntersectionObserver); live parts poll the JSON API. No framework, no
// network access beyond this server. Every text from the store is set with
// textContent, never as HTML.
"use strict";

const LIVE_POLL_MS = 1000;

function getJSON(url) {
  return fetch(url, {credentials: "same-origin"}).then((r) => r.json().then((body) => {
    if (!r.ok) { throw new Error(body.error || r.statusText); }
    return body;
  }));
}

function whenVisible(el, load) {
  if (!("IntersectionObserver" in window)) { load(el); return; }
  const obs = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (e.isIntersecting) { obs.unobserve(e.target); load(e.target); }
    }
  }, {rootMargin: "200px"});
  obs.observe(el);
}

function showError(el, err) {
  const pre = document.createElement("pre");
  pre.className = "error";
  pre.textContent = String(err.message || err);
  el.replaceChildren(pre);
}

function drawChart(el) {
  el.classList.add("loading");
  getJSON(el.dataset.src).then((fig) => {
    el.classList.remove("loading");
    const layout = Object.assign({autosize: true, margin: {t: 40, r: 20, b: 50, l: 60}}, fig.layout || {});
    window.Plotly.newPlot(el, fig.data || [], layout, {responsive: true, displaylogo: false});
    el.dataset.rendered = "1";
  }).catch((err) => { el.classList.remove("loading"); showError(el, err); });
}

function numpyChart(el, arr) {
  const div = document.createElement("div");
  div.className = "chart small";
  el.appendChild(div);
  const x = arr.values.map((_, i) => i * arr.stride);
  window.Plotly.newPlot(div, [{x: x, y: arr.values, mode: "lines", name: arr.name}],
    {autosize: true, height: 220, margin: {t: 20, r: 10, b: 30, l: 50}}, {displaylogo: false});
}

function showPreview(el) {
  getJSON(el.dataset.preview).then((info) => {
    const p = info.preview;
    if (p.type === "image") {
      const img = document.createElement("img");
      img.src = el.dataset.inline;
      img.alt = info.name;
      img.className = "artifact-image";
      el.replaceChildren(img);
    } else if (p.type === "text" || p.type === "json") {
      const pre = document.createElement("pre");
      pre.textContent = p.text + (p.truncated ? "\n… (truncated; download for the rest)" : "");
      el.replaceChildren(pre);
    } else if (p.type === "numpy") {
      el.replaceChildren();
      for (const arr of p.arrays) {
        const line = document.createElement("p");
        const stats = ["min", "max", "mean"].filter((k) => k in arr).map((k) => `${k} ${arr[k].toPrecision(6)}`);
        line.textContent = `${arr.name}: shape [${arr.shape.join(", ")}] ${arr.dtype} ${stats.join(" · ")}`;
        el.appendChild(line);
        if (arr.values && window.Plotly) { numpyChart(el, arr); }
      }
    } else {
      const note = document.createElement("p");
      note.className = "empty";
      note.textContent = p.reason || "no preview";
      el.replaceChildren(note);
    }
    el.dataset.rendered = "1";
  }).catch((err) => showError(el, err));
}

function loadText(el) {
  getJSON(el.dataset.src).then((d) => { el.textContent = d.text || d.error || ""; })
    .catch((err) => showError(el, err));
}

function loadLog(el) {
  const refresh = () => getJSON(el.dataset.src).then((d) => {
    el.textContent = d.lines.join("\n");
    el.dataset.truncated = d.truncated ? "1" : "";
  }).catch((err) => showError(el, err));
  refresh();
  if (el.dataset.live) { el._timer = setInterval(refresh, LIVE_POLL_MS); }
}

function liveRunStatus(el) {
  const timer = setInterval(() => getJSON(el.dataset.live).then((run) => {
    el.textContent = run.status;
    el.className = "badge badge-" + run.status;
    if (run.status !== "running") {
      clearInterval(timer);
      for (const log of document.querySelectorAll("pre.log")) { clearInterval(log._timer); }
    }
  }).catch(() => clearInterval(timer)), LIVE_POLL_MS);
}

function liveExperiments(table) {
  const refresh = () => getJSON(table.dataset.live).then((body) => {
    for (const e of body.experiments) {
      const row = table.querySelector(`tr[data-experiment="${CSS.escape(e.experiment_id)}"]`);
      if (!row) { continue; }
      for (const cell of row.querySelectorAll("[data-count]")) {
        const status = cell.dataset.count;
        const n = e.counts[status] || 0;
        const badge = document.createElement("span");
        badge.className = n ? "badge badge-" + status : "";
        badge.textContent = String(n);
        cell.replaceChildren(badge);
      }
      row.querySelector("progress").value = e.progress || 0;
      row.querySelector("[data-field=progress]").textContent = `${e.finished} / ${e.total}`;
      row.querySelector("[data-field=last_activity]").textContent = e.last_activity || "";
    }
  }).catch(() => {});
  refresh();
  setInterval(refresh, LIVE_POLL_MS);
}

function liveCounts(el) {
  const refresh = () => getJSON(el.dataset.live).then((e) => {
    const parts = [];
    for (const [status, n] of Object.entries(e.counts)) {
      if (!n) { continue; }
      const badge = document.createElement("span");
      badge.className = "badge badge-" + status;
      badge.dataset.status = status;
      badge.textContent = `${status}: ${n}`;
      parts.push(badge, " ");
    }
    const done = document.createElement("span");
    done.textContent = `${e.finished} / ${e.total} finished`;
    el.replaceChildren(...parts, done);
  }).catch((err) => showError(el, err));
  refresh();
  setInterval(refresh, LIVE_POLL_MS);
}

function setupPicker(form) {
  const filter = document.getElementById("picker-filter");
  const hidden = document.getElementById("columns");
  const boxes = Array.from(form.querySelectorAll(".picker-list input[type=checkbox]"));
  if (filter) {
    filter.addEventListener("input", () => {
      const q = filter.value.toLowerCase();
      for (const b of boxes) { b.parentElement.hidden = q !== "" && !b.value.toLowerCase().includes(q); }
    });
  }
  form.addEventListener("submit", () => {
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
    if (chosen.length) { hidden.value = chosen.join(","); }
  });
}

function setupCopy(button) {
  button.addEventListener("click", () => getJSON(button.dataset.snippets).then((s) => {
    const text = s[button.dataset.which];
    const out = document.getElementById("snippet");
    out.textContent = text;
    out.hidden = false;
    if (navigator.clipboard) { navigator.clipboard.writeText(text).catch(() => {}); }
  }).catch((err) => showError(document.getElementById("snippet"), err)));
}

function setupCompare(button) {
  const boxes = Array.from(document.querySelectorAll("input.pick-run"));
  const update = () => {
    const n = boxes.filter((b) => b.checked).length;
    button.disabled = n < 2 || n > 20;
  };
  for (const b of boxes) { b.addEventListener("change", update); }
  button.addEventListener("click", () => {
    const ids = boxes.filter((b) => b.checked).map((b) => b.value);
    window.location.href = "/compare?runs=" + encodeURIComponent(ids.join(","));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll(".chart[data-src]")) { whenVisible(el, drawChart); }
  for (const el of document.querySelectorAll(".preview[data-preview]")) { whenVisible(el, showPreview); }
  for (const el of document.querySelectorAll("pre.lazy-text[data-src]")) { whenVisible(el, loadText); }
  for (const el of document.querySelectorAll("pre.log[data-src]")) { whenVisible(el, loadLog); }
  const status = document.querySelector("#run-status[data-live]");
  if (status) { liveRunStatus(status); }
  const experiments = document.querySelector("table#experiments[data-live]");
  if (experiments) { liveExperiments(experiments); }
  const counts = document.querySelector("#counts[data-live]");
  if (counts) { liveCounts(counts); }
  const form = document.getElementById("query-form");
  if (form) { setupPicker(form); }
  for (const b of document.querySelectorAll("button.copy")) { setupCopy(b); }
  const compare = document.getElementById("compare");
  if (compare) { setupCompare(compare); }
});
