// The capture page's service worker: the page, its scripts and styles and the rep's customers
// are kept in the Cache API and answered network-first (fresh when online, cached offline).
// Served from /app/capture-sw.js, registered with scope /app/capture: no other page is touched.
"use strict";
var CACHE = "fieldbot-capture-v1";
var KEEP = ["/app/capture", "/app/capture.webmanifest", "/app/api/capture/customers",
            "/app/static/app.css", "/app/static/rep.css", "/app/static/capture.css",
            "/app/static/app.js", "/app/static/capture.js", "/app/static/capture-icon.svg",
            "/app/static/capture-icon-192.png"];

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(CACHE).then(function (cache) {
    return cache.addAll(KEEP);
  }).then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (n) {
      return n.indexOf("fieldbot-capture-") === 0 && n !== CACHE;
    }).map(function (n) { return caches.delete(n); }));
  }).then(function () { return self.clients.claim(); }));
});

self.addEventListener("fetch", function (event) {
  var req = event.request;
  if (req.method !== "GET") return;  // uploads go straight to the network
  var url = new URL(req.url);
  if (url.origin !== self.location.origin || KEEP.indexOf(url.pathname) < 0) return;
  event.respondWith(fetch(req).then(function (resp) {
    // a sign-in redirect or an error page is never cached in place of the real thing
    if (resp.ok && !resp.redirected && resp.type === "basic") {
      var copy = resp.clone();
      caches.open(CACHE).then(function (cache) { return cache.put(url.pathname, copy); });
    }
    return resp;
  }).catch(function () {
    return caches.match(url.pathname).then(function (hit) {
      return hit || new Response("离线，且没有缓存 / Offline and not cached", {
        status: 503, headers: {"Content-Type": "text/plain; charset=utf-8"}});
    });
  }));
});
