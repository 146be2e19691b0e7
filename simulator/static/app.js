// FieldBot demo chat page: plain JS, no build step. Talks to the simulator's /demo/api/*.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const NAMES = { wecom: "企业微信 WeCom", dingtalk: "钉钉 DingTalk", feishu: "飞书 Feishu" };
  const state = { platform: "", user: "", people: [], seenToasts: 0, sig: "" };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  async function api(method, path, body) {
    const opts = { method, headers: {} };
    if (body) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const r = await fetch(path, opts);
    const t = await r.text();
    if (!r.ok) throw new Error(t || r.status);
    return t ? JSON.parse(t) : {};
  }

  function toast(kind, text) {
    const t = el("div", "toast " + (kind || "info"), text);
    $("toasts").appendChild(t);
    setTimeout(() => { t.style.opacity = "0"; }, 2200);
    setTimeout(() => t.remove(), 2700);
  }

  // Each platform's card drawn the way its client does, from that platform's own payload
  // (the simulator normalises WeCom template_card / DingTalk card / Feishu card JSON 2.0 into
  // title, fields, text, inputs, buttons and keeps which look it came from).
  function drawInput(inp) {
    const wrap = el("label", "input " + inp.type);
    if (inp.type !== "checkbox") wrap.appendChild(el("span", "ilabel", inp.label || inp.placeholder || inp.name));
    let ctl;
    if (inp.type === "select") {
      ctl = el("select");
      const first = el("option", "", inp.placeholder || "请选择 / choose"); first.value = ""; ctl.appendChild(first);
      (inp.options || []).forEach((o) => { const op = el("option", "", o.text); op.value = o.value; ctl.appendChild(op); });
      if (inp.initial) ctl.value = inp.initial;
    } else if (inp.type === "date") {
      ctl = el("input"); ctl.type = "date"; if (inp.initial) ctl.value = String(inp.initial).slice(0, 10);
    } else if (inp.type === "checkbox") {
      ctl = el("input"); ctl.type = "checkbox"; ctl.checked = !!inp.checked;
      wrap.appendChild(ctl); wrap.appendChild(el("span", "ilabel", inp.label || inp.name));
    } else if (inp.multiline) {
      ctl = el("textarea"); ctl.rows = 3; ctl.placeholder = inp.placeholder || "";
    } else {
      ctl = el("input"); ctl.type = "text"; ctl.placeholder = inp.placeholder || "";
    }
    ctl.dataset.name = inp.name; ctl.dataset.type = inp.type;
    if (inp.type !== "checkbox") wrap.appendChild(ctl);
    return wrap;
  }

  function formOf(box) {
    const form = {};
    box.querySelectorAll("[data-name]").forEach((c) => {
      if (c.dataset.type === "checkbox") form[c.dataset.name] = c.checked;
      else if (c.value !== "") form[c.dataset.name] = c.value;
    });
    return form;
  }

  function renderCard(m) {
    const c = m.card;
    const look = c.look || state.platform;
    const box = el("div", "card look-" + look + " color-" + (c.color || "blue") + (m.updated ? " updated" : "") + (c.status ? " final" : ""));
    box.dataset.cardId = m.id;
    const head = el("div", "head");
    head.appendChild(el("div", "title", c.title || ""));
    if (c.subtitle) head.appendChild(el("small", "", c.subtitle));
    box.appendChild(head);
    const body = el("div", "body");
    if (look === "wecom" && c.status) body.appendChild(el("div", "emphasis", c.status));
    if (c.fields && c.fields.length) {
      const dl = el("dl", "fields");
      c.fields.forEach((f) => { dl.appendChild(el("dt", "", f.label)); dl.appendChild(el("dd", "", f.value)); });
      body.appendChild(dl);
    }
    if (c.text) body.appendChild(el("div", "text", c.text.replace(/\*\*/g, "")));
    if (c.status && look !== "wecom") body.appendChild(el("div", "status", c.status));
    if (c.inputs && c.inputs.length && !c.status) {
      const form = el("div", "inputs");
      c.inputs.forEach((inp) => form.appendChild(drawInput(inp)));
      body.appendChild(form);
    }
    box.appendChild(body);
    if (c.buttons && c.buttons.length) {
      const bar = el("div", "buttons");
      c.buttons.forEach((b, i) => {
        const btn = el("button", b.style || "default", b.text);
        btn.type = "button";
        btn.onclick = async () => {
          btn.disabled = true;
          try {
            const r = await api("POST", "/demo/api/tap",
              { platform: state.platform, user: state.user, card: m.id, button: i, form: formOf(box) });
            if (r.toast) { toast(r.toast.kind || r.toast.type, r.toast.text || r.toast.content); }
            state.seenToasts += r.toast ? 1 : 0;
          } catch (e) { toast("error", "tap failed: " + e.message); btn.disabled = false; }
          poll();
        };
        bar.appendChild(btn);
      });
      box.appendChild(bar);
    }
    if (m.updated) box.appendChild(el("div", "tag", "✓ 卡片已更新 / card updated"));
    return box;
  }

  function render(messages) {
    const chat = $("chat");
    const atBottom = chat.scrollHeight - chat.scrollTop - chat.clientHeight < 40;
    const typed = {};  // what the user has entered in open cards survives a redraw
    chat.querySelectorAll(".card[data-card-id]").forEach((b) => { typed[b.dataset.cardId] = formOf(b); });
    chat.innerHTML = "";
    if (!messages.length) {
      chat.appendChild(el("p", "hint", "还没有消息。试试发送 help。 No messages yet: try “help”."));
    }
    messages.forEach((m) => {
      const row = el("div", "msg " + (m.from === "user" ? "user" : "bot"));
      row.appendChild(el("div", "who", m.from === "user" ? "我 / me" : "FieldBot · " + m.kind));
      if (m.card) row.appendChild(renderCard(m));
      else row.appendChild(el("div", "bubble", m.text));
      chat.appendChild(row);
    });
    chat.querySelectorAll(".card[data-card-id]").forEach((b) => {
      const was = typed[b.dataset.cardId];
      if (!was) return;
      b.querySelectorAll("[data-name]").forEach((c) => {
        if (!(c.dataset.name in was)) return;
        if (c.dataset.type === "checkbox") c.checked = !!was[c.dataset.name];
        else c.value = was[c.dataset.name];
      });
    });
    if (atBottom) chat.scrollTop = chat.scrollHeight;
  }

  async function poll() {
    if (!state.platform || !state.user) return;
    try {
      const q = new URLSearchParams({ platform: state.platform, user: state.user });
      const r = await api("GET", "/demo/api/messages?" + q.toString());
      const sig = JSON.stringify(r.messages);
      if (sig !== state.sig) { state.sig = sig; render(r.messages); }
    } catch (e) { /* the next poll retries */ }
  }

  async function say(body) {
    try {
      const r = await api("POST", "/demo/api/say",
        Object.assign({ platform: state.platform, user: state.user }, body));
      if (r.status >= 400) toast("error", "bot answered HTTP " + r.status);
    } catch (e) { toast("error", "send failed: " + e.message); }
    poll();
  }

  function switchTo() {
    state.platform = $("platform").value;
    state.user = $("person").value;
    state.sig = "";
    localStorage.setItem("fieldbot.demo", JSON.stringify({ p: state.platform, u: state.user }));
    ["workbench", "workbench2"].forEach((id) => {
      const wb = $(id);
      if (wb) wb.href = "/demo/workbench?" + new URLSearchParams({ platform: state.platform, user: state.user });
    });
    $("chat").innerHTML = "";
    poll();
  }

  // -- media: samples, uploads, hold-to-talk ---------------------------------------------
  function toBase64(blob) {
    return new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => resolve(String(r.result).split(",", 2)[1] || "");
      r.onerror = () => reject(r.error);
      r.readAsDataURL(blob);
    });
  }

  function audioSeconds(blob) {
    return new Promise((resolve) => {
      const a = document.createElement("audio");
      const url = URL.createObjectURL(blob);
      const done = (v) => { URL.revokeObjectURL(url); resolve(v); };
      a.preload = "metadata";
      a.onloadedmetadata = () => done(isFinite(a.duration) ? Math.round(a.duration) : 0);
      a.onerror = () => done(0);
      a.src = url;
      setTimeout(() => done(0), 3000);
    });
  }

  async function sendFile(file, seconds) {
    const isAudio = (file.type || "").startsWith("audio/") || /\.(amr|ogg|opus|m4a|mp3|wav|webm|silk)$/i.test(file.name || "");
    const isImage = (file.type || "").startsWith("image/") || /\.(jpe?g|png|webp|heic)$/i.test(file.name || "");
    if (!isAudio && !isImage) { toast("error", "只能发送照片或录音 / a photo or an audio file, please"); return; }
    if (file.size > 10 * 1024 * 1024) { toast("error", "文件太大（上限 10 MB）/ file too large (10 MB)"); return; }
    toast("info", "正在发送… / sending…");
    const data = await toBase64(file);
    if (isAudio && seconds === undefined) seconds = await audioSeconds(file);
    await say({ kind: isAudio ? "voice" : "image", data, mime: file.type || "",
      name: file.name || "", seconds: seconds || 0 });
  }

  function setupMedia(samples) {
    const bar = $("sample-buttons");
    (samples.voice || []).forEach((v) => {
      const b = el("button", "", "🎤 示例语音 " + v.seconds + "s");
      b.type = "button"; b.title = v.text; b.dataset.sample = v.id;
      b.onclick = () => say({ kind: "voice", sample: v.id });
      bar.appendChild(b);
    });
    (samples.photos || []).forEach((p) => {
      const b = el("button", "", "");
      b.type = "button"; b.title = "门头照片：" + p.name; b.dataset.sample = p.id;
      const img = el("img"); img.src = "/static/samples/" + p.file; img.alt = p.name;
      b.appendChild(img); b.appendChild(document.createTextNode("📷 " + p.name.slice(0, 4)));
      b.onclick = () => say({ kind: "image", sample: p.id });
      bar.appendChild(b);
    });
    $("upload").onchange = async (ev) => {
      const f = ev.target.files && ev.target.files[0];
      ev.target.value = "";
      if (f) { try { await sendFile(f); } catch (e) { toast("error", "upload failed: " + e.message); } }
    };
    const talk = $("talk");
    let rec = null, chunks = [], started = 0;
    const stop = () => { if (rec && rec.state === "recording") rec.stop(); };
    talk.onpointerdown = async (ev) => {
      ev.preventDefault();
      if (!navigator.mediaDevices || !window.MediaRecorder) {
        toast("error", "这个浏览器不能录音 / this browser cannot record"); return;
      }
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        chunks = [];
        rec = new MediaRecorder(stream);
        rec.ondataavailable = (e) => { if (e.data && e.data.size) chunks.push(e.data); };
        rec.onstop = async () => {
          stream.getTracks().forEach((t) => t.stop());
          talk.classList.remove("recording");
          const seconds = Math.max(1, Math.round((Date.now() - started) / 1000));
          const blob = new Blob(chunks, { type: rec.mimeType || "audio/webm" });
          if (!blob.size) { toast("error", "没有录到声音 / nothing recorded"); return; }
          const f = new File([blob], "录音.webm", { type: blob.type });
          try { await sendFile(f, seconds); } catch (e) { toast("error", "send failed: " + e.message); }
        };
        started = Date.now();
        rec.start(250);
        talk.classList.add("recording");
        talk.setPointerCapture && talk.setPointerCapture(ev.pointerId);
      } catch (e) { toast("error", "麦克风不可用 / microphone unavailable: " + e.message); }
    };
    talk.onpointerup = stop;
    talk.onpointercancel = stop;
  }

  async function init() {
    const info = await api("GET", "/demo/api/people");
    let saved = {};
    try { saved = JSON.parse(localStorage.getItem("fieldbot.demo") || "{}"); } catch (e) { saved = {}; }
    info.platforms.forEach((p) => {
      const o = el("option", "", NAMES[p] || p); o.value = p; $("platform").appendChild(o);
    });
    info.people.forEach((p) => {
      const label = p.name + " · " + p.role + (p.team ? " · " + p.team : "");
      const o = el("option", "", label); o.value = p.key; $("person").appendChild(o);
    });
    if (saved.p && info.platforms.includes(saved.p)) $("platform").value = saved.p;
    if (saved.u) $("person").value = saved.u;
    else if (info.people.some((p) => p.key === "zhangsan")) $("person").value = "zhangsan";
    $("platform").onchange = switchTo;
    $("person").onchange = switchTo;
    $("composer").onsubmit = (ev) => {
      ev.preventDefault();
      const text = $("text").value.trim();
      if (!text) return;
      $("text").value = "";
      say({ kind: "text", text });
    };
    setupMedia(info.samples || { photos: [], voice: [] });
    $("alerts-now").onclick = () => say({ kind: "text", text: "提醒" });
    $("digest-now").onclick = () => say({ kind: "text", text: "日报" });
    switchTo();
    setInterval(poll, 400);  // a card shows within half a second of the bot sending it
  }

  init().catch((e) => { document.body.appendChild(el("p", "error", "demo API unavailable: " + e.message)); });
})();
