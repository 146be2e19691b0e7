// The import form: refuse a file over the upload limit before sending it (the server refuses
// it too, but only after the whole upload).
(function () {
  "use strict";
  var form = document.getElementById("import-form");
  if (!form) return;
  var max = parseInt(form.getAttribute("data-max-bytes"), 10) || 0;
  var input = form.querySelector('input[type="file"]');
  var warn = document.getElementById("too-big");
  function tooBig() {
    var f = input && input.files && input.files[0];
    return !!(f && max && f.size > max);
  }
  if (input) input.addEventListener("change", function () { warn.hidden = !tooBig(); });
  form.addEventListener("submit", function (ev) {
    if (tooBig()) { warn.hidden = false; ev.preventDefault(); ev.stopImmediatePropagation(); }
  }, true);
})();
