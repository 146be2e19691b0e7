// The offline-first capture page: compose a visit (customer, note, photo downscaled on the
// device, a voice note recorded in the page, the position), queue it in IndexedDB under a
// client-generated key, and sync the queue when the network is there (on load, on "online",
// by the button), one item at a time with upload progress. The server files each key once.
(function () {
  "use strict";
  var root = document.getElementById("capture");
  if (!root) return;
  function $(id) { return document.getElementById(id); }
  var USER = root.getAttribute("data-user");
  var csrf = root.getAttribute("data-csrf");
  var MAX_PX = 1600, MAX_RECORD_S = 600;
  var customers = [], position = null, photoBlob = null, voice = null, syncing = false;
  var retryTimer = null;

  // -- IndexedDB: one store, keyed by the item's idempotency key --------------------------
  var dbp = new Promise(function (ok, fail) {
    var open = indexedDB.open("fieldbot-capture", 1);
    open.onupgradeneeded = function () {
      open.result.createObjectStore("queue", {keyPath: "key"});
    };
    open.onsuccess = function () { ok(open.result); };
    open.onerror = function () { fail(open.error); };
  });
  function tx(mode, fn) {
    return dbp.then(function (db) {
      return new Promise(function (ok, fail) {
        var t = db.transaction("queue", mode), store = t.objectStore("queue"), out;
        var req = fn(store);
        if (req) req.onsuccess = function () { out = req.result; };
        t.oncomplete = function () { ok(out); };
        t.onerror = function () { fail(t.error); };
        t.onabort = function () { fail(t.error); };
      });
    });
  }
  function allItems() {
    return tx("readonly", function (s) { return s.getAll(); }).then(function (items) {
      return (items || []).filter(function (i) { return String(i.user_id) === USER; })
        .sort(function (a, b) { return a.created_at < b.created_at ? -1 : 1; });
    });
  }
  function putItem(item) { return tx("readwrite", function (s) { return s.put(item); }); }
  function dropItem(key) { return tx("readwrite", function (s) { return s.delete(key); }); }

  // -- the queue on screen -----------------------------------------------------------------
  var STATE = {waiting: "待上传 / Waiting", uploading: "上传中 / Uploading",
               done: "已上传 ✓ / Synced", error: "失败 / Failed"};
  function text(tag, cls, value) {
    var el = document.createElement(tag);
    if (cls) el.className = cls;
    el.textContent = value;
    return el;
  }
  function render() {
    return allItems().then(function (items) {
      var list = $("queue");
      list.innerHTML = "";
      var waiting = 0, failed = 0;
      items.forEach(function (item) {
        if (item.state === "waiting" || item.state === "uploading") waiting += 1;
        if (item.state === "error") failed += 1;
        var li = document.createElement("li");
        li.setAttribute("data-key", item.key);
        li.setAttribute("data-state", item.state);
        var head = document.createElement("div");
        head.className = "head";
        head.appendChild(text("b", "who", item.customer_name || "?"));
        head.appendChild(text("span", "state", STATE[item.state] || item.state));
        li.appendChild(head);
        var kinds = [item.has_photo ? "照片 Photo" : "", item.has_audio ? "语音 Voice" : "",
                     item.lat != null ? "定位 ±" + Math.round(item.accuracy || 0) + " m" : ""];
        var tags = document.createElement("div");
        kinds.filter(Boolean).forEach(function (k) { tags.appendChild(text("span", "badge", k)); });
        li.appendChild(tags);
        if (item.text) li.appendChild(text("p", "msg muted", item.text.slice(0, 140)));
        if (item.state === "uploading") {
          var bar = document.createElement("progress");
          bar.max = 100;
          bar.value = item.progress || 0;
          li.appendChild(bar);
        }
        var r = item.result;
        if (item.state === "done" && r) {
          if (r.customer) li.appendChild(text("p", "msg", "已记到 / Filed for: " + r.customer.name));
          if (r.notice) li.appendChild(text("p", "msg notice", r.notice));
          if (r.checkin) {
            var far = r.checkin.far;
            li.appendChild(text("p", "msg checkin" + (far ? " far" : ""), r.checkin.label +
              (far ? "（超出 " + Math.round(r.checkin.radius_m) + " m 范围 / outside the radius）" : "")));
          }
        }
        if (item.message) li.appendChild(text("p", "msg " + (item.state === "error" ? "bad" : "muted"), item.message));
        if (item.state === "error" || item.state === "done") {
          var rm = text("button", "link remove", item.state === "done" ? "移除 / Clear" : "删除 / Remove");
          rm.type = "button";
          rm.addEventListener("click", function () { dropItem(item.key).then(render); });
          li.appendChild(rm);
        }
        list.appendChild(li);
      });
      $("queue-empty").hidden = items.length > 0;
      $("queue-count").textContent = waiting + " 条待上传 / " + waiting + " waiting" +
        (failed ? " · " + failed + " 条失败 / " + failed + " failed" : "");
      root.setAttribute("data-waiting", String(waiting));
      return items;
    });
  }

  // -- customers (the service worker keeps the last answer for offline use) ----------------
  function loadCustomers() {
    return fetch("/app/api/capture/customers", {credentials: "same-origin",
                                                headers: {Accept: "application/json"}})
      .then(function (r) {
        if (r.status === 401) { signInAgain(); return null; }
        return r.ok ? r.json() : null;
      }).then(function (data) {
        if (!data) return;
        if (data.csrf) csrf = data.csrf;
        customers = data.customers || [];
        var dl = $("c-customers");
        dl.innerHTML = "";
        customers.forEach(function (c) {
          var o = document.createElement("option");
          o.value = c.name;
          dl.appendChild(o);
        });
        root.setAttribute("data-customers", String(customers.length));
      }).catch(function () {});
  }
  function findCustomer(name) {
    name = name.trim();
    for (var i = 0; i < customers.length; i++) {
      var c = customers[i];
      if (c.name === name || c.short_name === name || (c.aliases || []).indexOf(name) >= 0) return c;
    }
    return null;
  }
  $("c-customer").addEventListener("input", function () {
    var c = findCustomer(this.value);
    $("c-customer-info").textContent = c ? [c.address, c.last_visit ? "上次拜访 / last visit " +
      c.last_visit.slice(0, 10) : ""].filter(Boolean).join(" · ") : "";
  });

  // -- position ----------------------------------------------------------------------------
  function locate() {
    if (!navigator.geolocation) { $("c-pos").textContent = "无法定位 / No location"; return; }
    navigator.geolocation.getCurrentPosition(function (p) {
      position = {lat: p.coords.latitude, lng: p.coords.longitude, accuracy: p.coords.accuracy};
      $("c-pos").textContent = "位置 / Position " + position.lat.toFixed(5) + ", " + position.lng.toFixed(5) +
        " ±" + Math.round(position.accuracy) + " m";
    }, function () {
      $("c-pos").textContent = "未获得位置（可不带位置保存）/ No position (you can save without)";
    }, {enableHighAccuracy: true, timeout: 15000, maximumAge: 60000});
  }

  // -- photo: downscaled on the device to ≤ 1600 px ----------------------------------------
  function downscale(file) {
    if (!window.createImageBitmap) return Promise.resolve(file);
    return createImageBitmap(file, {imageOrientation: "from-image"}).then(function (bmp) {
      var scale = Math.min(1, MAX_PX / Math.max(bmp.width, bmp.height));
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(bmp.width * scale);
      canvas.height = Math.round(bmp.height * scale);
      canvas.getContext("2d").drawImage(bmp, 0, 0, canvas.width, canvas.height);
      return new Promise(function (ok) {
        canvas.toBlob(function (b) { ok(b || file); }, "image/jpeg", 0.85);
      });
    }).catch(function () { return file; });  // not decodable here: the server decides
  }
  $("c-photo").addEventListener("change", function () {
    var file = this.files && this.files[0];
    if (!file) return;
    $("c-photo-status").textContent = "处理中… / Preparing…";
    downscale(file).then(function (blob) {
      photoBlob = blob;
      var img = $("c-preview");
      img.src = URL.createObjectURL(blob);
      img.hidden = false;
      $("c-photo-status").textContent = "照片 ✓ " + Math.round(blob.size / 1024) + " KB";
    });
  });

  // -- voice: MediaRecorder, whatever container the browser gives --------------------------
  var rec = null, recStart = 0, recTimer = null;
  var recBtn = $("c-record");
  if (!window.MediaRecorder || !navigator.mediaDevices) recBtn.hidden = true;
  function pickType() {
    var types = ["audio/webm;codecs=opus", "audio/webm", "audio/mp4", "audio/aac"];
    for (var i = 0; i < types.length; i++) {
      if (MediaRecorder.isTypeSupported && MediaRecorder.isTypeSupported(types[i])) return types[i];
    }
    return "";
  }
  function stopRecording() { if (rec && rec.state === "recording") rec.stop(); }
  recBtn.addEventListener("click", function () {
    if (rec) { stopRecording(); return; }
    recBtn.disabled = true;
    navigator.mediaDevices.getUserMedia({audio: true}).then(function (stream) {
      var type = pickType(), chunks = [];
      rec = new MediaRecorder(stream, type ? {mimeType: type} : undefined);
      rec.ondataavailable = function (e) { if (e.data && e.data.size) chunks.push(e.data); };
      rec.onstop = function () {
        stream.getTracks().forEach(function (t) { t.stop(); });
        clearInterval(recTimer);
        var seconds = (Date.now() - recStart) / 1000;
        var blob = new Blob(chunks, {type: rec.mimeType || type || "audio/webm"});
        voice = {blob: blob, seconds: seconds};
        rec = null;
        recBtn.textContent = "重录 / Record again";
        $("c-voice-status").innerHTML = "";
        $("c-voice-status").appendChild(text("span", "ok", "录音 ✓ " + Math.round(seconds) +
          " s（联网后转写 / transcribed after sync）"));
      };
      rec.start(1000);
      recStart = Date.now();
      recBtn.disabled = false;
      recBtn.textContent = "停止 / Stop";
      recTimer = setInterval(function () {
        var s = Math.round((Date.now() - recStart) / 1000);
        $("c-voice-status").textContent = "录音中 / Recording… " + s + " s";
        if (s >= MAX_RECORD_S) stopRecording();
      }, 500);
    }).catch(function () {
      recBtn.disabled = false;
      $("c-voice-status").textContent = "无法使用麦克风 / The microphone is not available.";
    });
  });

  // -- compose → queue ---------------------------------------------------------------------
  $("capture-form").addEventListener("submit", function (e) {
    e.preventDefault();
    if (rec) { $("c-error").textContent = "请先停止录音 / Stop the recording first."; return; }
    var name = $("c-customer").value.trim(), note = $("c-text").value.trim();
    var c = findCustomer(name);
    if (!name) { $("c-error").textContent = "请选择客户 / Choose the customer."; return; }
    if (!note && !photoBlob && !voice) {
      $("c-error").textContent = "请填写记录，或拍照/录音 / Write a note, or add a photo or voice.";
      return;
    }
    $("c-error").textContent = "";
    var item = {
      key: crypto.randomUUID(), user_id: USER, customer_id: c ? c.id : null,
      customer_name: c ? c.name : name, text: note, created_at: new Date().toISOString(),
      lat: position ? position.lat : null, lng: position ? position.lng : null,
      accuracy: position ? position.accuracy : null, coord_system: "wgs84",
      photo: photoBlob, audio: voice ? voice.blob : null, has_photo: !!photoBlob, has_audio: !!voice,
      audio_seconds: voice ? voice.seconds : null, state: "waiting", progress: 0
    };
    putItem(item).then(function () {
      $("capture-form").reset();
      $("c-preview").hidden = true;
      $("c-photo-status").textContent = "";
      $("c-voice-status").textContent = "";
      $("c-customer-info").textContent = "";
      recBtn.textContent = "录音 / Record";
      photoBlob = null;
      voice = null;
      return render();
    }).then(function () { sync(); });
  });

  // -- sync --------------------------------------------------------------------------------
  // The session is gone: the queue stays as it is (nothing is marked as uploading) until
  // the rep signs in again and taps sync.
  var signedOut = false;
  function signInAgain() { signedOut = true; $("signin-again").hidden = false; }
  function upload(item) {
    return new Promise(function (ok) {
      var fd = new FormData();
      ["key", "user_id", "customer_id", "customer_name", "text", "lat", "lng", "accuracy",
       "coord_system", "audio_seconds"].forEach(function (k) {
        if (item[k] !== null && item[k] !== undefined) fd.append(k, String(item[k]));
      });
      if (item.photo) fd.append("photo", item.photo, "photo.jpg");
      if (item.audio) {
        var ext = (item.audio.type || "").indexOf("mp4") >= 0 ? "m4a" : "webm";
        fd.append("audio", item.audio, "voice." + ext);
      }
      var xhr = new XMLHttpRequest();
      xhr.open("POST", "/app/api/capture");
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = function (e) {
        if (!e.lengthComputable) return;
        var li = document.querySelector('#queue li[data-key="' + item.key + '"] progress');
        if (li) li.value = Math.round(100 * e.loaded / e.total);
      };
      xhr.onload = function () {
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
        ok({status: xhr.status, body: body});
      };
      xhr.onerror = xhr.onabort = xhr.ontimeout = function () { ok({status: 0, body: null}); };
      xhr.send(fd);
    });
  }
  function settle(item, res, csrfRetried) {
    if (res.status === 200 && res.body) {
      item.state = "done";
      item.result = res.body;
      item.message = "";
      item.photo = null;  // the server has it: free the device's storage
      item.audio = null;
      return putItem(item).then(function () { return "next"; });
    }
    if (res.status === 401) {  // the queue stays: drawn first, then the sign-in prompt
      item.state = "waiting";
      return putItem(item).then(render).then(function () { signInAgain(); return "stop"; });
    }
    if (res.status === 403 && !res.body && !csrfRetried) return "csrf";
    if (res.status >= 400 && res.status < 500 && res.body && res.body.error) {
      item.state = "error";
      item.message = res.body.error;
      return putItem(item).then(function () { return "next"; });
    }
    item.state = "waiting";  // no answer, or the server's trouble: retried later
    item.message = "网络中断，稍后自动重试 / No answer: retrying soon.";
    return putItem(item).then(function () { return "retry"; });
  }
  function syncOne(item, csrfRetried) {
    item.state = "uploading";
    item.progress = 0;
    return putItem(item).then(render).then(function () { return upload(item); })
      .then(function (res) { return settle(item, res, csrfRetried); })
      .then(function (next) {
        if (next !== "csrf") return next;
        return loadCustomers().then(function () { return syncOne(item, true); });
      });
  }
  function sync() {
    if (syncing) return Promise.resolve();
    if (!navigator.onLine || signedOut) return render();
    syncing = true;
    $("sync").disabled = true;
    return allItems().then(function (items) {
      var todo = items.filter(function (i) { return i.state === "waiting" || i.state === "uploading"; });
      var chain = Promise.resolve("next");
      todo.forEach(function (item) {
        chain = chain.then(function (prev) {
          return prev === "next" ? syncOne(item, false) : prev;
        });
      });
      return chain;
    }).then(function (last) {
      syncing = false;
      $("sync").disabled = false;
      if (last === "retry") {
        clearTimeout(retryTimer);
        retryTimer = setTimeout(sync, 2000);
      }
      return render();
    }, function () {
      syncing = false;
      $("sync").disabled = false;
      return render();
    });
  }

  function showNet() {
    var on = navigator.onLine;
    $("net").textContent = on ? "在线 / Online" : "离线 / Offline";
    $("net").className = "badge " + (on ? "online" : "offline");
  }
  window.addEventListener("online", function () { showNet(); loadCustomers().then(sync); });
  window.addEventListener("offline", showNet);
  $("sync").addEventListener("click", function () {
    signedOut = false;
    $("signin-again").hidden = true;
    sync();
  });

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/app/capture-sw.js", {scope: "/app/capture"})
      .then(function () { return navigator.serviceWorker.ready; })
      .then(function () { root.setAttribute("data-offline", "ready"); })
      .catch(function () { root.setAttribute("data-offline", "unavailable"); });
  }
  showNet();
  locate();
  render().then(loadCustomers).then(sync);
})();
