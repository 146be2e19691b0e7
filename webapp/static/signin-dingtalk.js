// DingTalk H5 免登: ask the DingTalk container for a one-time authCode, then let the server
// exchange it for the user id (GET /app/auth/dingtalk?authCode=…).
(function () {
  "use strict";
  var box = document.getElementById("dingtalk-signin");
  var status = document.getElementById("dingtalk-status");
  if (!box || !window.fieldbotDingTalk) return;
  var dd = window.fieldbotDingTalk;
  function fail(msg) { status.className = "bad"; status.textContent = msg; }
  var timer = setTimeout(function () { fail("未在钉钉中打开 / Not inside DingTalk"); }, 8000);
  dd.ready(function () {
    dd.requestAuthCode({ corpId: box.dataset.corpId, clientId: box.dataset.clientId })
      .then(function (res) {
        clearTimeout(timer);
        var q = new URLSearchParams({ authCode: res.code, next: box.dataset.next });
        window.location.replace("/app/auth/dingtalk?" + q.toString());
      })
      .catch(function (err) { clearTimeout(timer); fail("钉钉登录失败 / DingTalk sign-in failed: " + (err && err.errorMessage || err)); });
  });
})();
