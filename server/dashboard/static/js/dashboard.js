// gatescan dashboard: live regions, without a framework and without inline script (the page's
// Content-Security-Policy is default-src 'self').
//
// A region is an element with data-live-src="/live/..." and data-live-interval="SECONDS". Every
// interval its inner HTML is replaced by what the server renders at that address (the same
// template fragment the page was built with, escaped by the server's Jinja autoescape). A
// status element [data-live-status] inside the page says whether updates are flowing.
// When the session has ended the server answers 401 and the page reloads (to the login form).
"use strict";

(function () {
  const MIN_INTERVAL_S = 1;

  function setStatus(ok) {
    document.querySelectorAll("[data-live-status]").forEach(function (status) {
      status.classList.toggle("paused", !ok);
      const text = ok ? status.dataset.textOk : status.dataset.textPaused;
      if (text) {
        status.textContent = text;
      }
    });
  }

  async function refresh(region) {
    let response;
    try {
      response = await fetch(region.dataset.liveSrc, {
        credentials: "same-origin",
        cache: "no-store",
        redirect: "manual",
        headers: { "X-Gatescan-Live": "1", "Accept": "text/html" },
      });
    } catch (error) {
      setStatus(false);
      return true;
    }
    if (response.status === 401 || response.type === "opaqueredirect") {
      window.location.reload();
      return false;
    }
    if (!response.ok) {
      setStatus(false);
      return true;
    }
    if (response.status === 204) {
      return true; // nothing to show live for this view
    }
    const html = await response.text();
    if (region.innerHTML !== html) {
      region.innerHTML = html;
    }
    region.dataset.liveUpdated = String(Date.now());
    setStatus(true);
    return true;
  }

  function start(region) {
    const seconds = Math.max(MIN_INTERVAL_S, Number(region.dataset.liveInterval) || 3);
    async function tick() {
      const again = document.hidden ? true : await refresh(region);
      if (again) {
        window.setTimeout(tick, seconds * 1000);
      }
    }
    window.setTimeout(tick, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-src]").forEach(start);
  });
})();
