// Keeps the holder's page working offline once loaded: its files, cache first.
"use strict";
const CACHE = "gatescan-pass-v1";
const FILES = ["/pass/", "/pass/qr.js", "/pass/holder.js", "/pass/holder.css", "/static/favicon.svg"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(FILES)));
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys().then((names) =>
      Promise.all(names.filter((name) => name !== CACHE).map((name) => caches.delete(name))),
    ),
  );
  self.clients.claim();
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || !FILES.includes(url.pathname)) return;
  // Network first (a new version is picked up when online), the cache when offline.
  event.respondWith(
    fetch(event.request)
      .then((answer) => {
        const copy = answer.clone();
        caches.open(CACHE).then((cache) => cache.put(url.pathname, copy));
        return answer;
      })
      .catch(() => caches.match(url.pathname)),
  );
});
