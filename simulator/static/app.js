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

  function renderCard(m) {
    const c = m.card;
    const box = el("div", "card" + (m.updated ? " updated" : ""));
    const head = el("div", "head", c.title || "");
    if (c.subtitle) head.appendChild(el("small", "", c.subtitle));
    box.appendChild(head);
    const body = el("div", "body");
    if (c.fields && c.fields.length) {
      const dl = el("dl", "fields");
      c.fields.forEach((f) => { dl.appendChild(el("dt", "", f.label)); dl.appendChild(el("dd", "", f.value)); });
      body.appendChild(dl);
    }
    if (c.text) body.appendChild(el("div", "text", c.text.replace(/\*\*/g, "")));
    if (c.status) body.appendChild(el("div", "status", c.status));
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
              { platform: state.platform, user: state.user, card: m.id, button: i });
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
    const wb = $("workbench");
    if (wb) wb.href = "/demo/workbench?" + new URLSearchParams({ platform: state.platform, user: state.user });
    $("chat").innerHTML = "";
    poll();
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
    $("voice").onclick = () => say({ kind: "voice" });
    $("photo").onclick = () => say({ kind: "image" });
    switchTo();
    setInterval(poll, 1000);
  }

  init().catch((e) => { document.body.appendChild(el("p", "error", "demo API unavailable: " + e.message)); });
})();
