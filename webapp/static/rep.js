// The visit form: photo → OCR → customer suggestion, voice (recorded or uploaded) →
// transcript → note and follow-up date, and the customer search box. The form posts without
// this script too; the script only adds the uploads and never blocks the page while they run.
(function () {
  "use strict";
  var form = document.getElementById("visit-form");
  if (!form) return;
  function $(id) { return document.getElementById(id); }
  var custId = $("customer_id"), custName = $("customer_name"), sugg = $("suggestions");
  var pending = 0, saveBtn = $("save");

  function status(el, kind, text) {
    el.innerHTML = "";
    var p = document.createElement("span");
    p.className = kind;
    p.textContent = text;
    el.appendChild(p);
  }
  function busy(delta) {
    pending += delta;
    saveBtn.disabled = pending > 0;
  }
  function optionFor(name) {
    var opts = document.querySelectorAll("#customer-list option");
    for (var i = 0; i < opts.length; i++) {
      if (opts[i].value === name) return opts[i];
    }
    return null;
  }
  function choose(id, name) {
    custId.value = id ? String(id) : "";
    custName.value = name || "";
    $("new_customer").checked = false;
    $("new-customer").hidden = true;
  }
  custName.addEventListener("input", function () {
    var opt = optionFor(custName.value.trim());
    custId.value = opt ? opt.getAttribute("data-id") : "";
  });

  function showCandidates(cands, others, readName) {
    sugg.innerHTML = "";
    if (cands.length) {
      if (!custId.value || cands.length === 1) choose(cands[0].customer_id, cands[0].name);
      var p = document.createElement("p");
      p.className = "ok";
      p.id = "suggested";
      p.textContent = "识别到客户 / Suggested: " + cands[0].name;
      sugg.appendChild(p);
      if (cands.length > 1) {
        cands.forEach(function (c) {
          var b = document.createElement("button");
          b.type = "button";
          b.className = "secondary chip";
          b.textContent = c.name;
          b.addEventListener("click", function () { choose(c.customer_id, c.name); });
          sugg.appendChild(b);
        });
      }
    } else if (others) {
      status(sugg, "warn", "这是其他同事负责的客户 / This customer belongs to a colleague.");
    } else if (readName) {
      status(sugg, "warn", "没有匹配的客户，可以新建 / No matching customer: create it?");
      $("new_name").value = readName;
      $("new_customer").checked = true;
      $("new-customer").hidden = false;
    }
  }

  function upload(url, field, file, filename, el, label, done) {
    var data = new FormData();
    data.append(field, file, filename || file.name || field);
    el.innerHTML = "";
    var p = document.createElement("p");
    p.className = "progress";
    p.textContent = label;
    el.appendChild(p);
    busy(1);
    function answered(res) {
      if (res.status === 202 && res.body.poll) {  // queued behind other uploads: ask again
        p.textContent = res.body.message || "排队识别中… / Queued…";
        return new Promise(function (ok) { setTimeout(ok, 1500); }).then(function () {
          return window.fieldbot.fetchJSON(res.body.poll, { method: "GET" });
        }).then(answered);
      }
      busy(-1);
      if (res.status >= 400 || res.body.error) {
        status(el, "bad", res.body.error || ("失败 / failed (" + res.status + ")"));
        return;
      }
      done(res.body);
    }
    window.fieldbot.fetchJSON(url, { method: "POST", body: data }).then(answered).catch(function () {
      busy(-1);
      status(el, "bad", "上传失败，请重试 / Upload failed: please retry.");
    });
  }

  // -- photo ---------------------------------------------------------------------------------
  $("photo").addEventListener("change", function () {
    var file = this.files && this.files[0];
    if (!file) return;
    var img = $("photo-preview");
    if (window.URL && /^image\//.test(file.type)) {
      img.src = URL.createObjectURL(file);
      img.hidden = false;
    }
    upload("/app/visits/photo", "photo", file, file.name, $("photo-status"),
           "识别中… / Reading the photo…", function (body) {
      $("photo_ref").value = body.photo_ref;
      $("ocr_text").value = (body.name || body.text || "").slice(0, 30);
      status($("photo-status"), "ok", "照片已识别 ✓ " + (body.name || body.text || "").slice(0, 40));
      showCandidates(body.candidates || [], body.others || 0, body.name);
    });
  });

  // -- voice ---------------------------------------------------------------------------------
  function gotTranscript(body) {
    $("transcript").value = body.text;
    $("audio_ref").value = body.audio_ref || "";
    var note = $("note");
    note.value = note.value ? note.value + "\n" + body.text : body.text;
    if (body.follow_up_on && !$("follow_up_on").value) $("follow_up_on").value = body.follow_up_on;
    status($("voice-status"), "ok", "已转写 ✓ / Transcribed");
    showCandidates(body.candidates || [], body.others || 0, "");
  }
  function sendAudio(blob, name) {
    upload("/app/visits/voice", "audio", blob, name, $("voice-status"),
           "转写中… / Transcribing…", gotTranscript);
  }
  $("audio").addEventListener("change", function () {
    var file = this.files && this.files[0];
    if (file) sendAudio(file, file.name);
  });
  var rec = $("record");
  // the container this browser records in: Opus in WebM (Chromium, Firefox), else what it
  // has (Safari / iOS WebViews: AAC in MP4); the server sniffs the bytes, the name is a hint
  function recordingType() {
    var types = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"];
    if (!MediaRecorder.isTypeSupported) return "";
    for (var i = 0; i < types.length; i++) {
      if (MediaRecorder.isTypeSupported(types[i])) return types[i];
    }
    return "";
  }
  function extFor(type) {
    if (/mp4|aac/.test(type)) return ".m4a";
    if (/ogg/.test(type)) return ".ogg";
    return ".webm";
  }
  if (window.MediaRecorder && navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    rec.hidden = false;
    var recorder = null, starting = false;
    function idle() {
      recorder = null;
      rec.textContent = "录音 / Record";
    }
    rec.addEventListener("click", function () {
      if (recorder) {  // stop: the recording is uploaded once the recorder has flushed it
        if (recorder.state === "recording") recorder.stop();
        return;
      }
      if (starting) return;  // a second tap while the microphone is opening
      starting = true;
      navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
        starting = false;
        var type = recordingType(), chunks = [], r;
        try {
          r = new MediaRecorder(stream, type ? { mimeType: type } : {});
        } catch (e) {
          stream.getTracks().forEach(function (t) { t.stop(); });
          status($("voice-status"), "bad", "此浏览器无法录音，请上传音频 / Cannot record here: upload a file.");
          return;
        }
        r.ondataavailable = function (e) { if (e.data && e.data.size) chunks.push(e.data); };
        r.onerror = function () {
          status($("voice-status"), "bad", "录音出错，请重试 / Recording failed: please retry.");
        };
        r.onstop = function () {
          stream.getTracks().forEach(function (t) { t.stop(); });
          busy(-1);
          idle();
          if (!chunks.length) {
            status($("voice-status"), "bad", "没有录到声音，请重试 / Nothing was recorded: please retry.");
            return;
          }
          var mime = r.mimeType || type || "audio/webm";
          sendAudio(new Blob(chunks, { type: mime }), "voice" + extFor(mime));
        };
        try {
          r.start();
        } catch (e) {
          stream.getTracks().forEach(function (t) { t.stop(); });
          status($("voice-status"), "bad", "此浏览器无法录音，请上传音频 / Cannot record here: upload a file.");
          return;
        }
        recorder = r;
        busy(1);  // saving now would drop the recording: stop first
        rec.textContent = "停止 / Stop ■";
        status($("voice-status"), "warn", "录音中… / Recording…");
      }).catch(function () {
        starting = false;
        status($("voice-status"), "bad", "无法使用麦克风，请上传音频 / No microphone: upload a file.");
      });
    });
  }
})();
