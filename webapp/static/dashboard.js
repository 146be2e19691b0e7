// Dashboard filters: picking a date means a custom period (the page works without this too:
// choose "自定义 Custom" by hand).
(function () {
  var form = document.getElementById("dash-filters");
  if (!form) return;
  var period = form.querySelector("#period");
  form.querySelectorAll('input[type="date"]').forEach(function (input) {
    input.addEventListener("change", function () { period.value = "custom"; });
  });
})();
