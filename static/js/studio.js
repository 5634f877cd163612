// Mockup Studio page script: upload, then follow the job over its websocket.
// Events are hints: on every (re)connect the page refetches the job over HTTP, so nothing is missed.
(function () {
  "use strict";
  const root = document.getElementById("studio");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const ACCEPTED = ["image/jpeg", "image/png", "image/webp"];
  const MAX_BYTES = parseInt(root.dataset.maxBytes, 10);
  const FINAL = ["succeeded", "failed", "canceled"];
  const STATUS_TEXT = {
    queued: "Queued", preparing: "Removing the background", generating: "Generating",
    succeeded: "Done", failed: "Failed", canceled: "Canceled",
  };
  let file = null;
  let jobId = root.dataset.jobId || "";
  let socket = null;
  let lastSeq = 0;
  let reconnectDelay = 500;
  let job = null;

  function csrf() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }
  function showFormError(message) {
    const el = $("form-error");
    el.textContent = message || "";
    el.hidden = !message;
  }

  // --- choosing the photo -------------------------------------------------------------------
  const dropzone = $("dropzone");
  const input = $("photo");
  function choose(f) {
    showFormError("");
    if (!f) return;
    if (!ACCEPTED.includes(f.type)) {
      showFormError("Please choose a JPEG, PNG or WebP photo (this file is " + (f.type || "of an unknown type") + ").");
      return;
    }
    if (f.size > MAX_BYTES) {
      showFormError("This photo is " + (f.size / 1048576).toFixed(1) + " MB; the limit is " + (MAX_BYTES / 1048576).toFixed(0) + " MB.");
      return;
    }
    file = f;
    const preview = $("photo-preview");
    preview.src = URL.createObjectURL(f);
    preview.hidden = false;
    $("dropzone-text").textContent = f.name + " — click to choose another";
  }
  dropzone.addEventListener("click", () => input.click());
  dropzone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
  input.addEventListener("change", () => choose(input.files[0]));
  dropzone.addEventListener("dragover", (e) => { e.preventDefault(); dropzone.classList.add("over"); });
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
  dropzone.addEventListener("drop", (e) => {
    e.preventDefault();
    dropzone.classList.remove("over");
    choose(e.dataTransfer.files[0]);
  });

  // --- picking styles -----------------------------------------------------------------------
  function mode() { return document.querySelector("input[name=mode]:checked").value; }
  function styleBoxes() { return Array.from(document.querySelectorAll("input[name=styles]")); }
  document.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", () => {
    styleBoxes().forEach((b) => { b.checked = false; });
  }));
  styleBoxes().forEach((box) => box.addEventListener("change", () => {
    const checked = styleBoxes().filter((b) => b.checked);
    const limit = mode() === "seeds" ? 1 : 5;
    if (checked.length > limit) {
      box.checked = false;
      showFormError(limit === 1 ? "Pick one style for five seeds." : "Pick up to five styles.");
    } else {
      showFormError("");
    }
  }));

  // --- starting a job -----------------------------------------------------------------------
  $("job-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!file) { showFormError("Choose a product photo first."); return; }
    const styles = styleBoxes().filter((b) => b.checked).map((b) => b.value);
    if (!styles.length) { showFormError("Pick at least one style."); return; }
    const data = new FormData();
    data.append("image", file);
    styles.forEach((s) => data.append("styles", s));
    if (mode() === "seeds") data.append("count", "5");
    data.append("product_name", $("product-name").value);
    $("start").disabled = true;
    try {
      const response = await fetch(root.dataset.createUrl, {
        method: "POST", body: data, headers: { "X-CSRFToken": csrf() }, credentials: "same-origin",
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        showFormError(body.error || ("The upload failed (" + response.status + ")."));
        return;
      }
      jobId = body.id;
      history.pushState({}, "", "/jobs/" + jobId + "/");
      lastSeq = 0;
      render(body);
      connect();
    } catch (err) {
      showFormError("The upload did not reach the server; check your connection and try again.");
    } finally {
      $("start").disabled = false;
    }
  });

  // --- following a job ----------------------------------------------------------------------
  async function refetch() {
    const response = await fetch("/jobs/" + jobId + ".json", { credentials: "same-origin" });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      showJobError(body.error || "This job could not be loaded.");
      return null;
    }
    const snapshot = await response.json();
    render(snapshot);
    return snapshot;
  }

  function connect() {
    if (socket) { socket.onclose = null; socket.close(); }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(scheme + "://" + location.host + "/ws/mockups/" + jobId + "/");
    socket.onopen = () => { reconnectDelay = 500; refetch(); };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (typeof event.seq === "number") {
        if (event.seq <= lastSeq) return;
        lastSeq = event.seq;
      }
      apply(event);
    };
    socket.onclose = (e) => {
      if (e.code === 4404) { showJobError("This job does not exist."); return; }
      if (job && FINAL.includes(job.status)) return;
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 10000);
    };
  }

  function apply(event) {
    if (!job) return;
    if (event.type === "variation.progress") {
      setProgress(event.index, event.step, event.steps);
    } else if (event.type === "job.status" || event.type === "job.cutout" ||
               event.type === "variation.succeeded" || event.type === "variation.failed") {
      refetch();
    }
  }

  function showJobError(message) {
    const el = $("job-error");
    el.textContent = message || "";
    el.hidden = !message;
  }

  function setProgress(index, step, steps) {
    const card = document.querySelector('.variation[data-index="' + index + '"]');
    if (!card) return;
    const bar = card.querySelector("progress");
    if (bar && steps) { bar.max = steps; bar.value = step; }
    const label = card.querySelector(".step");
    if (label && steps) label.textContent = "step " + step + " of " + steps;
  }

  function render(snapshot) {
    job = snapshot;
    lastSeq = Math.max(lastSeq, snapshot.seq || 0);
    $("job-card").hidden = false;
    const status = $("job-status");
    status.textContent = STATUS_TEXT[snapshot.status] || snapshot.status;
    status.className = "status status-" + snapshot.status;
    let position = "";
    if (snapshot.status === "queued" && snapshot.position) {
      position = "position " + snapshot.position + " in the queue";
      if (snapshot.eta_seconds) position += ", about " + Math.ceil(snapshot.eta_seconds) + " s";
    }
    $("job-position").textContent = position;
    $("cancel").hidden = FINAL.includes(snapshot.status);
    const anyImage = snapshot.variations.some((v) => v.image);
    const zip = $("download-all");
    zip.hidden = !anyImage;
    zip.href = "/jobs/" + snapshot.id + "/mockups.zip";
    showJobError(snapshot.status === "failed" ? (snapshot.error || "This job failed.") : "");
    if (snapshot.cutout) {
      $("cutout-box").hidden = false;
      if ($("cutout").getAttribute("src") !== snapshot.cutout) $("cutout").src = snapshot.cutout;
      $("confidence").textContent = Math.round((snapshot.cutout_confidence || 0) * 100) + "%";
      $("cutout-method").textContent = snapshot.cutout_method ? "(" + snapshot.cutout_method + ")" : "";
    }
    const container = $("variations");
    snapshot.variations.forEach((v) => {
      let card = container.querySelector('.variation[data-index="' + v.index + '"]');
      if (!card) {
        card = document.createElement("article");
        card.className = "variation";
        card.dataset.index = v.index;
        card.innerHTML = '<div class="frame"><img alt="" hidden><progress max="1" value="0"></progress></div>' +
          '<div class="meta"><strong class="style"></strong> <span class="vstatus"></span> <span class="step"></span>' +
          '<div class="fidelity"></div><div class="actions"><a class="download" hidden>Download</a> ' +
          '<button type="button" class="link regenerate" hidden>New seed</button></div><div class="error"></div></div>';
        card.querySelector(".regenerate").addEventListener("click", () => regenerate(v.index));
        container.appendChild(card);
      }
      card.querySelector(".style").textContent = v.style;
      card.querySelector(".vstatus").textContent = v.status;
      card.dataset.status = v.status;
      const img = card.querySelector("img");
      const bar = card.querySelector("progress");
      if (v.image) {
        if (img.getAttribute("src") !== v.image) img.src = v.image;
        img.alt = v.style + " mockup";
        img.hidden = false;
        bar.hidden = true;
        card.querySelector(".step").textContent = "";
        const link = card.querySelector(".download");
        link.href = v.image + (v.image.includes("?") ? "&" : "?") + "download=1";
        link.hidden = false;
        card.querySelector(".fidelity").textContent = v.fidelity_max_delta === 0
          ? "Product pixel-exact" : "Product max change: " + v.fidelity_max_delta;
      } else {
        img.hidden = true;
        bar.hidden = false;
        card.querySelector(".download").hidden = true;
        card.querySelector(".fidelity").textContent = "";
        if (v.steps) setProgress(v.index, v.step, v.steps);
      }
      card.querySelector(".regenerate").hidden = !FINAL.includes(snapshot.status);
      card.querySelector(".error").textContent = v.error || "";
    });
  }

  async function post(url) {
    const response = await fetch(url, { method: "POST", headers: { "X-CSRFToken": csrf() }, credentials: "same-origin" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) { showJobError(body.error || "That did not work (" + response.status + ")."); return; }
    render(body);
    if (!FINAL.includes(body.status)) connect();
  }
  function regenerate(index) { post("/jobs/" + jobId + "/variations/" + index + "/regenerate"); }
  $("cancel").addEventListener("click", () => post("/jobs/" + jobId + "/cancel"));

  if (jobId) connect();
})();
