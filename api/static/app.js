// Review page logic: plain JS, no build step, no third-party code. Report text and identifiers are PHI:
// they only reach the DOM through textContent/value, are never logged and never stored.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "reportgen.apiKey";
  const MAX_VIEWS = 4;
  const POLL_MS = 1000;
  const POLL_LIMIT = 600;  // ~10 min: a queued job on a busy CPU server can take a while
  const FALLBACK_DISCLAIMER = "AI-generated draft: requires review by a qualified radiologist. " +
    "Not for clinical use without that review.";
  const EXT_EDITED = "https://reportgen.invalid/fhir/StructureDefinition/reviewer-edited";
  let current = null;     // the job dict last loaded from the server
  let previewUrls = [];   // object URLs to revoke when the study changes
  let heatmapUrls = new Map();  // observation -> object URL of its overlay PNG, for the current job
  let heatmapSeq = 0;           // only the latest heat-map request may update the figure
  let heatmapPicked = false;    // the reader chose an observation: do not replace it automatically
  const LISTED = new Set(["positive", "uncertain"]);

  // --- small helpers -------------------------------------------------------------------------
  function el(tag, attrs = {}, text = null) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== null) node.textContent = text;
    return node;
  }
  function setStatus(msg) { $("status").textContent = msg; }
  function showError(msg) { $("error").textContent = msg || ""; }
  function apiHeaders() {
    const key = $("api-key").value.trim();
    return key ? { "X-API-Key": key } : {};
  }
  async function apiFetch(url, options = {}) {
    const resp = await fetch(url, { ...options, headers: { ...apiHeaders(), ...(options.headers || {}) } });
    if (!resp.ok) {
      let msg = `${resp.status} ${resp.statusText}`;
      try {
        const body = await resp.json();
        const err = body.error || body;
        if (err.message) msg = `${err.message} (${err.code || resp.status})`;
        else if (body.detail) msg = `${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`;
      } catch (_) { /* not JSON: keep the status line */ }
      throw new Error(msg);
    }
    return resp;
  }
  function busy(on) {
    for (const id of ["submit", "open-job"]) $(id).disabled = on;
  }
  function isDicomName(name) { return /\.(dcm|dicom)$/i.test(name) || !/\.[a-z0-9]+$/i.test(name); }

  // --- images ----------------------------------------------------------------------------------
  function clearImages(note) {
    previewUrls.forEach((u) => URL.revokeObjectURL(u));
    previewUrls = [];
    const box = $("images");
    box.replaceChildren(el("p", { class: "placeholder" }, note));
  }
  function showLocalImages(files) {
    clearImages("");
    const box = $("images");
    box.replaceChildren();
    files.forEach((file, i) => {
      const fig = el("figure");
      const isImage = /^image\/(png|jpeg)$/.test(file.type) && !isDicomName(file.name);
      if (isImage) {
        const url = URL.createObjectURL(file);
        previewUrls.push(url);
        fig.append(el("img", { src: url, alt: `View ${i + 1} of the uploaded study` }));
      } else {
        fig.append(el("p", { class: "placeholder" }, "DICOM: preview not available in the browser."));
      }
      fig.append(el("figcaption", {}, `View ${i + 1}: ${file.name}`));
      box.append(fig);
    });
  }

  // --- rendering the draft ---------------------------------------------------------------------
  function renderTriage(triage) {
    const box = $("triage");
    box.replaceChildren();
    if (!triage) { box.append(el("span", { class: "note" }, "No triage.")); return; }
    const priority = String(triage.priority || "routine");
    box.append(el("span", {}, "Triage:"), el("span", { class: `badge ${priority}` }, priority));
    const reasons = triage.reasons || [];
    if (reasons.length) {
      const ul = el("ul", { "aria-label": "Triage reasons" });
      reasons.forEach((r) => ul.append(el("li", {}, r)));
      box.append(ul);
    } else {
      box.append(el("span", { class: "note" }, "no reasons given"));
    }
  }
  function renderLabels(labels) {
    const tbody = $("labels").tBodies[0];
    tbody.replaceChildren();
    for (const [name, label] of Object.entries(labels || {})) {
      const p = Number(label.probability);
      const pct = Number.isFinite(p) ? `${(100 * p).toFixed(1)}%` : "n/a";
      const tr = el("tr", { class: String(label.status || "") });
      tr.append(el("th", { scope: "row" }, name));
      const td = el("td", { class: "prob" });
      const bar = el("span", { class: "bar", "aria-hidden": "true" });
      const fill = el("span");
      fill.style.width = Number.isFinite(p) ? `${Math.max(0, Math.min(1, p)) * 100}%` : "0";
      bar.append(fill);
      td.append(bar, document.createTextNode(pct));
      tr.append(td, el("td", { class: "status" }, label.status || ""));
      const button = el("button", { type: "button", class: "secondary heatmap-button",
        "aria-label": `Show the heat map for ${name}` }, "Show");
      tr.append(el("td", { class: "heatmap-cell" }));
      tr.lastChild.append(button);
      tr.dataset.observation = name;
      tr.classList.add("clickable");
      if (LISTED.has(String(label.status))) tr.classList.add("listed");
      tr.addEventListener("click", () => { heatmapPicked = true; showHeatmap(name); });
      tbody.append(tr);
    }
  }
  // --- heat maps and the laterality check ---------------------------------------------------------
  function resetHeatmaps() {
    heatmapSeq++;
    heatmapPicked = false;
    heatmapUrls.forEach((u) => URL.revokeObjectURL(u));
    heatmapUrls = new Map();
    const img = $("heatmap-img");
    img.removeAttribute("src");
    img.alt = "";
    img.hidden = true;
    $("heatmap-title").textContent = "Heat map: click an observation in the label table.";
    $("laterality-flags").replaceChildren();
  }
  function markSelected(name) {
    for (const tr of $("labels").tBodies[0].rows) {
      const on = tr.dataset.observation === name;
      tr.classList.toggle("selected", on);
      if (on) tr.setAttribute("aria-selected", "true"); else tr.removeAttribute("aria-selected");
    }
  }
  async function showHeatmap(name) {
    if (!current || current.status !== "done") return;
    const seq = ++heatmapSeq;
    const jobId = current.id;
    markSelected(name);
    const title = $("heatmap-title");
    title.textContent = `Heat map: ${name} (computing...)`;
    try {
      let url = heatmapUrls.get(name);
      if (!url) {
        const path = `v1/reports/${encodeURIComponent(jobId)}/heatmaps/${encodeURIComponent(name)}.png`;
        const blob = await (await apiFetch(path)).blob();
        if (!current || current.id !== jobId) return;  // another study was opened meanwhile
        url = URL.createObjectURL(blob);
        heatmapUrls.set(name, url);
      }
      if (seq !== heatmapSeq) return;
      const img = $("heatmap-img");
      img.alt = `Heat map overlay for ${name}`;
      img.src = url;
      img.hidden = false;
      title.textContent = `Heat map: ${name}`;
    } catch (e) {
      if (seq === heatmapSeq) title.textContent = `Heat map: ${name} is not available (${e.message})`;
    }
  }
  function renderLateralityFlags(listing) {
    const box = $("laterality-flags");
    box.replaceChildren();
    const flags = listing.laterality_flags || [];
    const n = Object.keys(listing.heatmaps || {}).length;
    box.classList.toggle("warn", flags.length > 0);
    if (!flags.length) {
      box.append(el("span", { class: "note" },
        `Laterality check: no left/right contradiction between the text and ${n} heat map${n === 1 ? "" : "s"}.`));
      return;
    }
    box.append(el("strong", {}, "Laterality check: the text's side disagrees with the heat map:"));
    const ul = el("ul");
    flags.forEach((f) => ul.append(el("li", {}, `"${f.sentence}": ${f.reason}`)));
    box.append(ul);
  }
  async function loadHeatmaps(job) {
    const jobId = job.id;
    const box = $("laterality-flags");
    box.replaceChildren(el("span", { class: "note" }, "Laterality check: computing heat maps..."));
    try {
      const listing = await (await apiFetch(`v1/reports/${encodeURIComponent(jobId)}/heatmaps`)).json();
      if (!current || current.id !== jobId) return;
      renderLateralityFlags(listing);
      for (const tr of $("labels").tBodies[0].rows) {
        const hm = (listing.heatmaps || {})[tr.dataset.observation];
        if (hm && hm.side) tr.title = `Heat map peak on the patient's ${hm.side} (${(100 * hm.confidence).toFixed(0)}%)`;
      }
      // Show the most probable listed observation unless the reader already picked one.
      const labels = (job.report && job.report.labels) || {};
      const best = Object.keys(listing.heatmaps || {})
        .sort((a, b) => Number((labels[b] || {}).probability) - Number((labels[a] || {}).probability))[0];
      if (best && !heatmapPicked) await showHeatmap(best);
    } catch (e) {
      if (current && current.id === jobId) {
        box.replaceChildren(el("span", { class: "note" }, `Laterality check not available: ${e.message}`));
      }
    }
  }

  function renderJob(job) {
    if (!current || current.id !== job.id) resetHeatmaps();
    current = job;
    $("job-id").value = job.id || "";
    const report = job.report || {};
    $("findings").value = report.findings || "";
    $("impression").value = report.impression || "";
    renderTriage(report.triage);
    renderLabels(report.labels);
    const flagged = report.flagged_sentences || [];
    const fl = $("flagged");
    fl.replaceChildren();
    if (flagged.length) {
      fl.append(el("strong", {}, "Sentences flagged for review:"));
      const ul = el("ul");
      flagged.forEach((s) => ul.append(el("li", {}, s)));
      fl.append(ul);
    }
    const m = report.model || {};
    $("model-info").textContent = m.name
      ? `Model ${m.name} ${m.version || ""} (sha256 ${String(m.sha256 || "?").slice(0, 12)}...), job ${job.id}, ` +
        `created ${job.created_at || "?"}`
      : "";
    const ready = Boolean(job.report);
    $("download-text").disabled = !ready;
    $("download-fhir").disabled = !ready;
    $("download-sr").disabled = !ready;
    if (job.status === "done" && job.report) loadHeatmaps(job);
  }

  // --- talking to the API ----------------------------------------------------------------------
  async function waitForReport(job) {
    for (let i = 0; job.status !== "done" && i < POLL_LIMIT; i++) {
      if (job.status === "failed") {
        const err = job.error || {};
        throw new Error(`the job failed: ${err.message || err.code || "unknown error"}`);
      }
      setStatus(`Job ${job.id} is ${job.status}; waiting for the draft...`);
      await new Promise((r) => setTimeout(r, POLL_MS));
      job = await (await apiFetch(`v1/reports/${encodeURIComponent(job.id)}`)).json();
    }
    if (job.status !== "done") throw new Error(`job ${job.id} is still ${job.status}; open it again later`);
    return job;
  }
  async function submitStudy() {
    showError("");
    const files = Array.from($("file-input").files || []);
    if (files.length < 1 || files.length > MAX_VIEWS) {
      showError(`Choose 1 to ${MAX_VIEWS} image files for one study.`);
      return;
    }
    const form = new FormData();
    files.forEach((f) => form.append("files", f, f.name));
    const indication = $("indication").value.trim();
    const accession = $("accession-number").value.trim();
    if (indication) form.append("indication", indication);
    if (accession) form.append("accession_number", accession);
    showLocalImages(files);
    busy(true);
    setStatus("Uploading and generating the draft...");
    try {
      const job = await (await apiFetch("v1/reports", { method: "POST", body: form })).json();
      renderJob(await waitForReport(job));
      setStatus("Draft ready: review and correct it before use.");
    } catch (e) {
      showError(`Could not generate a draft: ${e.message}`);
      setStatus("");
    } finally {
      busy(false);
    }
  }
  async function openJob() {
    showError("");
    const id = $("job-id").value.trim();
    if (!id) { showError("Enter a job id."); return; }
    busy(true);
    setStatus(`Opening job ${id}...`);
    try {
      const job = await (await apiFetch(`v1/reports/${encodeURIComponent(id)}`)).json();
      clearImages("Images are not shown for a job opened by id.");
      renderJob(await waitForReport(job));
      setStatus("Draft loaded: review and correct it before use.");
    } catch (e) {
      showError(`Could not open job ${id}: ${e.message}`);
      setStatus("");
    } finally {
      busy(false);
    }
  }

  // --- triage worklist ---------------------------------------------------------------------------
  async function loadWorklist() {
    showError("");
    const list = $("worklist");
    try {
      const body = await (await apiFetch("v1/worklist?status=all&limit=50")).json();
      list.replaceChildren();
      const items = body.items || [];
      if (!items.length) list.append(el("li", { class: "note" }, "No jobs yet."));
      items.forEach((item) => {
        const priority = item.priority ? String(item.priority) : "pending";
        const button = el("button", { type: "button", class: "secondary worklist-item", "data-job": item.id });
        button.append(el("span", { class: `badge ${priority}` }, priority),
          el("span", {}, ` ${item.status} - ${item.created_at || ""}` +
            `${item.accession_number ? ` - accession ${item.accession_number}` : ""} - job ${String(item.id).slice(0, 8)}`));
        if ((item.reasons || []).length) button.title = item.reasons.join("; ");
        button.addEventListener("click", () => { $("job-id").value = item.id; openJob(); });
        const li = el("li");
        li.append(button);
        list.append(li);
      });
    } catch (e) {
      showError(`Could not load the worklist: ${e.message}`);
    }
  }

  // --- downloads (edited text) -----------------------------------------------------------------
  function editedText() {
    // Same layout as reportgen.api.fhir.report_text, with the reviewer's edits.
    const report = (current && current.report) || {};
    const parts = ["FINDINGS:", $("findings").value.trim(), "", "IMPRESSION:", $("impression").value.trim()];
    const flagged = report.flagged_sentences || [];
    if (flagged.length) parts.push("", "SENTENCES FLAGGED FOR REVIEW:", ...flagged.map((s) => `- ${s}`));
    parts.push("", report.disclaimer || FALLBACK_DISCLAIMER, "");
    return parts.join("\n");
  }
  function wasEdited() {
    const report = (current && current.report) || {};
    return $("findings").value.trim() !== (report.findings || "").trim() ||
      $("impression").value.trim() !== (report.impression || "").trim();
  }
  function base64Utf8(text) {
    const bytes = new TextEncoder().encode(text);
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(bin);
  }
  function escapeHtml(s) {
    return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }
  function download(name, mime, content) {
    const url = URL.createObjectURL(new Blob([content], { type: mime }));
    const a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  function downloadText() {
    if (!current) return;
    download(`report-${current.id}.txt`, "text/plain;charset=utf-8", editedText());
  }
  async function downloadFhir() {
    if (!current) return;
    showError("");
    try {
      const resp = await apiFetch(`v1/reports/${encodeURIComponent(current.id)}?format=fhir`,
        { headers: { Accept: "application/fhir+json, application/json" } });
      const resource = await resp.json();
      const impression = $("impression").value.trim();
      const findings = $("findings").value.trim();
      const disclaimer = (current.report && current.report.disclaimer) || FALLBACK_DISCLAIMER;
      if (impression) resource.conclusion = impression; else delete resource.conclusion;
      const form = (resource.presentedForm && resource.presentedForm[0]) || { contentType: "text/plain; charset=utf-8" };
      form.data = base64Utf8(editedText());
      form.title = form.title || "AI draft chest X-ray report";
      resource.presentedForm = [form];
      resource.text = {
        status: "generated",
        div: `<div xmlns="http://www.w3.org/1999/xhtml"><p><b>Findings:</b> ${escapeHtml(findings)}</p>` +
             `<p><b>Impression:</b> ${escapeHtml(impression)}</p><p><i>${escapeHtml(disclaimer)}</i></p></div>`,
      };
      if (wasEdited()) {
        resource.extension = (resource.extension || []).filter((e) => e.url !== EXT_EDITED);
        resource.extension.push({ url: EXT_EDITED, valueBoolean: true });
      }
      resource.status = "preliminary";  // an edited draft is still unsigned
      download(`report-${current.id}.fhir.json`, "application/fhir+json", JSON.stringify(resource, null, 2));
    } catch (e) {
      showError(`Could not build the FHIR report: ${e.message}`);
    }
  }

  async function downloadSr() {
    if (!current) return;
    showError("");
    try {
      const resp = await apiFetch(`v1/reports/${encodeURIComponent(current.id)}?format=sr`);
      download(`report-${current.id}-sr.dcm`, "application/dicom", await resp.blob());
    } catch (e) {
      showError(`Could not download the DICOM SR: ${e.message}`);
    }
  }

  // --- wiring ----------------------------------------------------------------------------------
  function init() {
    const stored = sessionStorage.getItem(KEY_STORE);
    if (stored) $("api-key").value = stored;
    $("api-key").addEventListener("input", (e) => sessionStorage.setItem(KEY_STORE, e.target.value));
    $("file-input").addEventListener("change", () => {
      const files = Array.from($("file-input").files || []);
      if (files.length > MAX_VIEWS) showError(`At most ${MAX_VIEWS} views per study.`); else showError("");
      if (files.length) showLocalImages(files.slice(0, MAX_VIEWS));
    });
    $("submit").addEventListener("click", submitStudy);
    $("open-job").addEventListener("click", openJob);
    $("job-id").addEventListener("keydown", (e) => { if (e.key === "Enter") openJob(); });
    $("download-text").addEventListener("click", downloadText);
    $("download-fhir").addEventListener("click", downloadFhir);
    $("download-sr").addEventListener("click", downloadSr);
    $("worklist-refresh").addEventListener("click", loadWorklist);
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("job");
    if (fromHash) { $("job-id").value = fromHash; openJob(); }
  }
  document.addEventListener("DOMContentLoaded", init);
})();
