// The "Preview / Aim" panel (templates/parts/preview_panel.html): start asks the server for a
// preview session, renewed while the page is open; the state is polled a few times a second and
// the image reloaded when a new frame arrived. Stop (or leaving the page) ends it.
"use strict";
(function () {
  const panel = document.querySelector("[data-preview-gate]");
  if (!panel) return;
  const gate = panel.dataset.previewGate;
  const base = "/api/v1/gates/" + encodeURIComponent(gate) + "/preview";
  const csrf = panel.dataset.csrf;
  const startButton = panel.querySelector("[data-preview-start]");
  const stopButton = panel.querySelector("[data-preview-stop]");
  const status = panel.querySelector("[data-preview-status]");
  const focus = panel.querySelector("[data-preview-focus]");
  const peak = panel.querySelector("[data-preview-peak]");
  const codes = panel.querySelector("[data-preview-codes]");
  const image = panel.querySelector("[data-preview-image]");
  let running = false, renewTimer = null, pollTimer = null, shownSeq = null;

  async function post(path) {
    const response = await fetch(base + path, {
      method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf},
    });
    if (!response.ok) throw new Error(response.status + " " + (await response.text()));
    return response.json();
  }

  function show(state) {
    if (state.seq === null || state.seq === undefined) return;
    focus.textContent = state.focus.toFixed(1);
    peak.textContent = state.peak.toFixed(1);
    focus.dataset.value = String(state.focus);
    peak.dataset.value = String(state.peak);
    codes.textContent = state.codes ? "· " + state.codes + " QR" : "";
    status.textContent = state.width + "×" + state.height + ", " + Math.round(state.jpeg_bytes / 1024) + " KiB";
    if (state.seq !== shownSeq) {
      shownSeq = state.seq;
      image.src = base + ".jpg?seq=" + state.seq;
      image.dataset.seq = String(state.seq);
      image.hidden = false;
    }
  }

  async function poll() {
    if (!running) return;
    try {
      const response = await fetch(base, {credentials: "same-origin"});
      const state = response.ok ? await response.json() : null;
      if (state && running) show(state);  // not after a stop that came meanwhile
    } catch (error) { status.textContent = String(error); }
    if (running) pollTimer = setTimeout(poll, 300);
  }

  async function start() {
    startButton.disabled = true;
    try {
      const state = await post("");
      running = true;
      stopButton.disabled = false;
      status.textContent = panel.dataset.waiting || "…";
      renewTimer = setInterval(() => post("").catch((e) => { status.textContent = String(e); }),
                               (state.renew_s || 20) * 1000);
      poll();
    } catch (error) {
      status.textContent = String(error);
      startButton.disabled = false;
    }
  }

  async function stop() {
    running = false;
    clearInterval(renewTimer);
    clearTimeout(pollTimer);
    stopButton.disabled = true;
    startButton.disabled = false;
    image.hidden = true;
    image.removeAttribute("src");
    shownSeq = null;
    try { await post("/stop"); } catch (error) { status.textContent = String(error); }
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", stop);
  window.addEventListener("pagehide", () => {
    if (running) fetch(base + "/stop", {
      method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf}, keepalive: true,
    });
  });
})();
