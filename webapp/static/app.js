// FieldBot mini-app: progressive enhancement only; every page works without it.
// - forms with data-busy disable their submit button and show a progress note while posting
// - fetchJSON(url, opts) adds the CSRF header from <meta name="csrf"> or the form's _csrf field
(function () {
  "use strict";
  function csrf() {
    var m = document.querySelector('meta[name="csrf"]');
    if (m) return m.content;
    var f = document.querySelector('input[name="_csrf"]');
    return f ? f.value : "";
  }
  window.fieldbot = {
    csrf: csrf,
    fetchJSON: function (url, opts) {
      opts = opts || {};
      opts.headers = Object.assign({ "X-CSRF-Token": csrf(), "Accept": "application/json" },
                                   opts.headers || {});
      opts.credentials = "same-origin";
      return fetch(url, opts).then(function (r) {
        return r.json().then(function (body) { return { status: r.status, body: body }; });
      });
    },
  };
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.hasAttribute("data-busy")) return;
    var btn = form.querySelector("button[type=submit], button:not([type])");
    if (btn) { setTimeout(function () { btn.disabled = true; }, 0); }
    var note = document.createElement("p");
    note.className = "progress";
    note.textContent = form.getAttribute("data-busy") || "处理中… / Working…";
    form.appendChild(note);
  });
})();
