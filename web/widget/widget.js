/*! AICC customer chat widget — one classic script, no dependencies.
 *
 * Embed:  <script src="https://HOST/widget.js" data-tenant="demo" async></script>
 * Options (attributes on the tag): data-locale="ko|en" (default: the browser's
 * language), data-title="…" (panel title).
 *
 * The API base is the origin of this script's src (http→ws, https→wss).
 * Everything renders in an open Shadow DOM on one <aicc-chat-widget> element
 * appended to <body>; the only global is window.AICCWidget.
 *
 * localStorage key "aicc-widget:<tenant>" (on the host page's origin) holds
 *   {conversation_id, token, expires_at (ms epoch), outbox: [{id, text}],
 *    csat, ratings: {message_id: "up"|"down"}, open}
 * so a reload resumes the conversation and keeps unsent (queued) messages.
 */
(function () {
  "use strict";
  if (window.AICCWidget) return;

  var script = document.currentScript || document.querySelector('script[src*="widget.js"][data-tenant]');
  if (!script || !script.dataset.tenant) {
    console.warn("AICC widget: no <script data-tenant> found");
    return;
  }
  var TENANT = script.dataset.tenant;
  var BASE = new URL(script.src, location.href).origin;
  var WS_BASE = BASE.replace(/^http/, "ws");
  var KEY = "aicc-widget:" + TENANT;
  var LOCALE = /^ko/i.test(script.dataset.locale || navigator.language || "") ? "ko" : "en";

  // ---- strings --------------------------------------------------------------
  var DICT = {
    en: {
      title: "Chat with us", open: "Open chat", minimise: "Minimise chat", panel: "Customer chat",
      handoff: "Talk to a person", end: "End chat", endQ: "End this chat?", endYes: "End chat", cancel: "Cancel",
      placeholder: "Type your message…", closedPh: "This chat has ended.", send: "Send", input: "Your message",
      log: "Conversation", you: "You", bot: "Assistant", agent: "Agent", agentNamed: "{name} · Agent",
      sending: "Sending…", queued: "Waiting for connection…", failed: "Not sent", sources: "Sources ({n})",
      typingBot: "The assistant is writing…", typingAgent: "{name} is typing…",
      stBot: "Virtual assistant · answers right away", stQueued: "Connecting you to an agent…",
      stQueuedPos: "Connecting you to an agent… You are number {n} in line.", stAssigned: "You're chatting with {name}",
      stClosed: "This chat has ended.", nAssigned: "{name} joined the chat.", nReleased: "You're back with the virtual assistant.",
      helpful: "Helpful", notHelpful: "Not helpful", fbThanks: "Thanks for your feedback",
      csatQ: "How was this chat?", csatN: "{n} out of 5", csatLo: "Poor", csatHi: "Great",
      csatThanks: "Thank you for rating this chat!", newConv: "Start a new conversation",
      offline: "You're offline. Messages will be sent when you're back.", connecting: "Connecting…",
      expired: "Your previous chat has expired.", hello: "Hello! Ask us anything about our services.",
      dismiss: "Dismiss", errNetwork: "Can't reach the chat service. Please check your connection.",
      errRate: "Too many requests. Please try again in a moment.", errRateIn: "Too many requests. Please try again in {n} s.",
      errOrigin: "This website is not allowed to use the chat.", errClosed: "This chat has ended; the message was not sent.",
      errGeneric: "Something went wrong.",
    },
    ko: {
      title: "채팅 상담", open: "채팅 상담 열기", minimise: "채팅 창 내리기", panel: "고객 채팅 상담",
      handoff: "상담원 연결", end: "상담 종료", endQ: "상담을 종료할까요?", endYes: "종료", cancel: "취소",
      placeholder: "메시지를 입력하세요…", closedPh: "상담이 종료되었습니다.", send: "보내기", input: "메시지",
      log: "대화 내용", you: "나", bot: "AI 상담봇", agent: "상담원", agentNamed: "{name} 상담원",
      sending: "보내는 중…", queued: "연결되면 보내 드려요…", failed: "보내지 못함", sources: "출처 ({n})",
      typingBot: "AI 상담봇이 답변을 작성하고 있어요…", typingAgent: "{name} 상담원이 입력 중이에요…",
      stBot: "AI 상담봇 · 바로 답변해 드려요", stQueued: "상담원을 연결하고 있어요…",
      stQueuedPos: "상담원을 연결하고 있어요… 대기 순서: {n}번째", stAssigned: "{name} 상담원과 상담 중입니다",
      stClosed: "상담이 종료되었습니다.", nAssigned: "{name} 상담원이 입장했습니다.", nReleased: "AI 상담봇이 다시 도와드립니다.",
      helpful: "도움이 됐어요", notHelpful: "도움이 안 됐어요", fbThanks: "의견 감사합니다",
      csatQ: "이번 상담은 어떠셨나요?", csatN: "5점 중 {n}점", csatLo: "불만족", csatHi: "매우 만족",
      csatThanks: "평가해 주셔서 감사합니다!", newConv: "새 상담 시작하기",
      offline: "오프라인 상태입니다. 연결되면 메시지를 보내 드려요.", connecting: "연결 중…",
      expired: "이전 상담이 만료되었습니다.", hello: "안녕하세요! 궁금한 점을 물어보세요.",
      dismiss: "닫기", errNetwork: "채팅 서버에 연결할 수 없습니다. 인터넷 연결을 확인해 주세요.",
      errRate: "요청이 너무 많습니다. 잠시 후 다시 시도해 주세요.", errRateIn: "요청이 너무 많습니다. {n}초 후에 다시 시도해 주세요.",
      errOrigin: "이 웹사이트에서는 채팅 상담을 사용할 수 없습니다.", errClosed: "상담이 종료되어 메시지를 보내지 못했습니다.",
      errGeneric: "문제가 발생했습니다.",
    },
  };
  var T = DICT[LOCALE];
  function t(k, vars) {
    return String(T[k] || DICT.en[k] || k).replace(/\{(\w+)\}/g, function (_, v) { return vars && vars[v] != null ? vars[v] : ""; });
  }

  // ---- storage (never throws: blocked storage falls back to memory) ---------
  var memory = {};
  function load() {
    try { return JSON.parse(localStorage.getItem(KEY)) || {}; } catch (e) { return memory; }
  }
  function update(fn) {
    var s = load();
    fn(s);
    memory = s;
    try { localStorage.setItem(KEY, JSON.stringify(s)); } catch (e) { /* memory only */ }
    return s;
  }
  function outbox() { return load().outbox || []; }

  // ---- DOM helpers ----------------------------------------------------------
  function h(tag, attrs) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      var v = attrs[k];
      if (v == null || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (var i = 2; i < arguments.length; i++) if (arguments[i] != null) e.append(arguments[i]);
    return e;
  }
  var ICONS = {
    chat: "M20 2H4a2 2 0 0 0-2 2v18l4-4h14a2 2 0 0 0 2-2V4a2 2 0 0 0-2-2z",
    down: "M16.6 8.6 12 13.2 7.4 8.6 6 10l6 6 6-6z",
    send: "M2 21l21-9L2 3v7l15 2-15 2z",
    up: "M1 21h4V9H1v12zm22-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.5-1.1L14.2 1 7.6 7.6C7.2 8 7 8.5 7 9v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7c.1-.3.2-.5.2-.8v-2z",
    dn: "M15 3H6c-.8 0-1.5.5-1.8 1.2l-3 7c-.1.3-.2.5-.2.8v2a2 2 0 0 0 2 2h6.3l-1 4.6v.3c0 .4.2.8.5 1.1L9.8 23l6.6-6.6c.4-.4.6-.9.6-1.4V5a2 2 0 0 0-2-2zm4 0v12h4V3h-4z",
  };
  function icon(name) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var p = document.createElementNS(ns, "path");
    p.setAttribute("d", ICONS[name]);
    svg.append(p);
    return svg;
  }
  // Plain text (line breaks kept by CSS); "[n]" citation markers styled.
  function richText(el, text) {
    el.textContent = "";
    String(text).split(/(\[\d{1,2}\])/).forEach(function (part) {
      if (/^\[\d{1,2}\]$/.test(part)) el.append(h("sup", { class: "ref" }, part));
      else if (part) el.append(part);
    });
  }
  function time(iso) {
    var d = iso ? new Date(iso) : new Date();
    return isNaN(d) ? "" : d.toLocaleTimeString(LOCALE === "ko" ? "ko-KR" : "en-US", { hour: "2-digit", minute: "2-digit" });
  }
  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    var x = Array.prototype.map.call(b, function (n) { return (n + 256).toString(16).slice(1); }).join("");
    return x.slice(0, 8) + "-" + x.slice(8, 12) + "-" + x.slice(12, 16) + "-" + x.slice(16, 20) + "-" + x.slice(20);
  }

  // ---- styles (all inside the shadow root; px only: rem follows the page) ---
  var CSS = [
    ":host{all:initial !important;position:fixed !important;z-index:2147483000 !important;display:block !important}",
    ".root{font:14px/1.45 system-ui,-apple-system,'Segoe UI','Apple SD Gothic Neo','Malgun Gothic','Noto Sans KR',sans-serif;color:#1d2430;letter-spacing:normal;text-align:left;-webkit-font-smoothing:antialiased}",
    ".root *{box-sizing:border-box}",
    "button,textarea{font:inherit;color:inherit;margin:0}",
    "button{cursor:pointer;border:0;background:none;padding:0}",
    "button:disabled{cursor:default;opacity:.55}",
    ":focus-visible{outline:2px solid #ffb020;outline-offset:2px}",
    "svg{width:20px;height:20px;fill:currentColor;display:block}",
    "[hidden]{display:none !important}",
    ".launcher{position:fixed;right:20px;bottom:20px;width:58px;height:58px;border-radius:50%;background:#0b5cad;color:#fff;display:flex;align-items:center;justify-content:center;box-shadow:0 6px 20px rgba(0,0,0,.25)}",
    ".launcher svg{width:28px;height:28px}",
    ".badge{position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;padding:0 5px;border-radius:10px;background:#d93025;color:#fff;font-size:12px;line-height:20px;text-align:center}",
    ".panel{position:fixed;right:20px;bottom:90px;width:380px;height:min(620px,calc(100vh - 110px));display:flex;flex-direction:column;background:#fff;border-radius:14px;box-shadow:0 12px 40px rgba(0,0,0,.28);overflow:hidden}",
    "@media (max-width:480px),(max-height:520px){.panel{inset:0;width:100%;height:100%;border-radius:0}.open .launcher{display:none}}",
    ".head{background:#0b5cad;color:#fff;padding:12px 12px 10px 16px}",
    ".row{display:flex;align-items:center;gap:8px}",
    ".titles{flex:1;min-width:0}",
    ".title{font-size:16px;font-weight:600;margin:0}",
    ".status{font-size:12px;opacity:.9;margin-top:1px}",
    ".icon{width:34px;height:34px;border-radius:50%;display:flex;align-items:center;justify-content:center;color:#fff}",
    ".icon:hover{background:rgba(255,255,255,.15)}",
    ".actions{margin-top:8px;gap:6px;flex-wrap:wrap}",
    ".act{font-size:12px;padding:4px 10px;border-radius:14px;border:1px solid rgba(255,255,255,.6);color:#fff}",
    ".act:hover{background:rgba(255,255,255,.15)}",
    ".bar{display:flex;align-items:center;gap:8px;padding:8px 12px;font-size:13px;background:#fff7e0;border-bottom:1px solid #f0dca0}",
    ".bar span{flex:1}",
    ".bar button{padding:4px 10px;border-radius:6px;background:#0b5cad;color:#fff}",
    ".bar button.plain{background:none;color:#0b5cad}",
    ".err{background:#fdecea;border-color:#f5c2bd;color:#8a1c14}",
    ".err button{background:none;color:#8a1c14;font-size:18px;line-height:1;padding:0 4px}",
    ".link{background:#eef2f7;border-color:#dde3ea;color:#445}",
    ".log{flex:1;overflow-y:auto;padding:12px 12px 4px;background:#f5f7fa;display:flex;flex-direction:column;gap:8px;overscroll-behavior:contain}",
    ".empty{margin:auto 0;text-align:center;color:#667;padding:24px}",
    ".msg{display:flex;flex-direction:column;max-width:86%;align-self:flex-start}",
    ".msg.customer{align-self:flex-end;align-items:flex-end}",
    ".who{font-size:11px;color:#5a6472;margin:0 0 2px 4px}",
    ".bubble{padding:8px 12px;border-radius:14px;background:#fff;border:1px solid #e2e6ec;white-space:pre-wrap;overflow-wrap:anywhere}",
    ".customer .bubble{background:#0b5cad;color:#fff;border-color:#0b5cad;border-bottom-right-radius:4px}",
    ".bot .bubble{border-bottom-left-radius:4px}",
    ".agent .bubble{background:#e8f5ee;border-color:#c4e6d2;border-bottom-left-radius:4px}",
    ".msg[data-state=preview] .bubble{color:#3b4452;border-style:dashed}",
    ".msg[data-state=sending] .bubble{opacity:.7}",
    ".msg[data-state=failed] .bubble{background:#fff;color:#8a1c14;border-color:#e7a39c}",
    ".msg.system{align-self:center;max-width:92%;text-align:center;font-size:12px;color:#4d5663;background:#e9edf2;border-radius:10px;padding:6px 12px;white-space:pre-wrap}",
    ".notice{align-self:center;font-size:12px;color:#5a6472;text-align:center}",
    "sup.ref{font-size:10px;color:#0b5cad;font-weight:600;vertical-align:super;line-height:0}",
    ".meta{display:flex;align-items:center;gap:6px;font-size:11px;color:#778;margin:2px 4px 0}",
    ".thumb{color:#8a93a0;padding:2px;border-radius:4px}",
    ".thumb svg{width:15px;height:15px}",
    ".thumb:hover:not(:disabled){color:#0b5cad}",
    ".thumb[aria-pressed=true]{color:#0b5cad;opacity:1}",
    ".fb{color:#0b5cad}",
    "details{font-size:12px;margin:4px 4px 0;color:#3b4452}",
    "summary{cursor:pointer;color:#0b5cad}",
    "details ol{margin:4px 0 0;padding-left:20px}",
    ".qr{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px}",
    ".qr button{border:1px solid #0b5cad;color:#0b5cad;background:#fff;border-radius:16px;padding:4px 12px;font-size:13px}",
    ".qr button:hover{background:#eaf2fb}",
    ".typing{padding:2px 16px 6px;font-size:12px;color:#5a6472;background:#f5f7fa;display:flex;align-items:center;gap:8px}",
    ".dots{display:inline-flex;gap:3px}",
    ".dots i{width:6px;height:6px;border-radius:50%;background:#8a93a0;animation:b 1.2s infinite ease-in-out}",
    ".dots i:nth-child(2){animation-delay:.15s}.dots i:nth-child(3){animation-delay:.3s}",
    "@keyframes b{0%,80%,100%{opacity:.3}40%{opacity:1}}",
    ".csat{padding:14px 12px;border-top:1px solid #e2e6ec;text-align:center;background:#fff}",
    ".csat p{margin:0 0 8px;font-weight:600}",
    ".scores{display:flex;justify-content:center;gap:6px}",
    ".scores button{width:40px;height:40px;border-radius:50%;border:1px solid #0b5cad;color:#0b5cad;font-weight:600}",
    ".scores button:hover{background:#0b5cad;color:#fff}",
    ".scale{display:flex;justify-content:space-between;font-size:11px;color:#778;max-width:236px;margin:4px auto 0}",
    ".new{margin-top:10px;padding:8px 14px;border-radius:8px;background:#0b5cad;color:#fff}",
    ".composer{display:flex;align-items:flex-end;gap:8px;padding:10px 12px;border-top:1px solid #e2e6ec;background:#fff}",
    "textarea{flex:1;resize:none;border:1px solid #cfd6df;border-radius:10px;padding:8px 10px;max-height:120px;min-height:38px;background:#fff;font-size:14px;line-height:1.4}",
    "textarea:focus{border-color:#0b5cad;outline:none;box-shadow:0 0 0 2px rgba(11,92,173,.2)}",
    ".send{width:38px;height:38px;border-radius:50%;background:#0b5cad;color:#fff;display:flex;align-items:center;justify-content:center;flex:none}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
  ].join("\n");

  // ---- state ----------------------------------------------------------------
  var S = {
    conv: null, // {id, token}
    creating: null, // the pending POST
    ws: null,
    ready: false, // welcome received and hello sent
    attempt: 0,
    failures: 0, // connection attempts that never opened
    timer: 0,
    lastSeq: 0,
    status: null,
    agent: null,
    ended: false,
    byId: new Map(), // message id → element
    byCid: new Map(), // client_msg_id → element (own bubbles)
    inflight: null, // {id, at} the outbox head last sent
    preview: null, // {replyTo, el, text}
    botWorking: false,
    agentTyping: false,
    typingSent: 0,
    typingOn: false,
    unread: 0,
    isOpen: false,
  };
  var UI = {};

  // ---- building the UI ------------------------------------------------------
  function build() {
    var host = document.createElement("aicc-chat-widget");
    var root = host.attachShadow({ mode: "open" });
    root.append(h("style", null, CSS));
    var wrap = h("div", { class: "root" });
    root.append(wrap);

    UI.badge = h("span", { class: "badge", hidden: true, "aria-hidden": "true" });
    UI.launcher = h("button", {
      class: "launcher", type: "button", "data-aicc": "launcher", "aria-label": t("open"),
      "aria-expanded": "false", "aria-controls": "aicc-panel", onclick: function () { toggle(); },
    }, icon("chat"), UI.badge);

    UI.status = h("div", { class: "status", "data-aicc": "status", "aria-live": "polite" });
    UI.handoff = h("button", { class: "act", type: "button", "data-aicc": "handoff", onclick: handoff }, t("handoff"));
    UI.close = h("button", { class: "act", type: "button", "data-aicc": "close", onclick: function () { showConfirm(true); } }, t("end"));
    var head = h("div", { class: "head" },
      h("div", { class: "row" },
        h("div", { class: "titles" }, h("h2", { class: "title", id: "aicc-title" }, script.dataset.title || t("title")), UI.status),
        h("button", { class: "icon", type: "button", "data-aicc": "minimize", "aria-label": t("minimise"), onclick: function () { close(true); } }, icon("down"))),
      h("div", { class: "row actions" }, UI.handoff, UI.close));

    UI.confirmYes = h("button", { type: "button", "data-aicc": "close-confirm", onclick: endChat }, t("endYes"));
    UI.confirm = h("div", { class: "bar", hidden: true, role: "group", "aria-label": t("endQ") },
      h("span", null, t("endQ")), UI.confirmYes,
      h("button", { type: "button", class: "plain", "data-aicc": "close-cancel", onclick: function () { showConfirm(false); } }, t("cancel")));
    UI.errText = h("span");
    UI.err = h("div", { class: "bar err", "data-aicc": "error", role: "alert", hidden: true }, UI.errText,
      h("button", { type: "button", "aria-label": t("dismiss"), onclick: function () { UI.err.hidden = true; } }, "×"));
    UI.link = h("div", { class: "bar link", "data-aicc": "link", hidden: true, role: "status" });

    UI.empty = h("p", { class: "empty" }, t("hello"));
    UI.log = h("div", { class: "log", "data-aicc": "log", role: "log", "aria-live": "polite", "aria-label": t("log"), tabindex: "0" }, UI.empty);
    UI.typingText = h("span");
    UI.typing = h("div", { class: "typing", "data-aicc": "typing", hidden: true }, h("span", { class: "dots", "aria-hidden": "true" }, h("i"), h("i"), h("i")), UI.typingText);

    UI.csat = h("div", { class: "csat", hidden: true });
    UI.input = h("textarea", {
      "data-aicc": "input", rows: "1", placeholder: t("placeholder"), "aria-label": t("input"), maxlength: "4000",
      onkeydown: onKey, oninput: onInput,
    });
    UI.send = h("button", { class: "send", type: "button", "data-aicc": "send", "aria-label": t("send"), onclick: submit }, icon("send"));
    UI.composer = h("div", { class: "composer" }, UI.input, UI.send);

    UI.panel = h("div", {
      class: "panel", id: "aicc-panel", "data-aicc": "panel", role: "dialog", "aria-labelledby": "aicc-title", hidden: true,
      onkeydown: function (e) { if (e.key === "Escape" && !e.isComposing) { e.stopPropagation(); close(true); } },
    }, head, UI.confirm, UI.err, UI.link, UI.log, UI.typing, UI.csat, UI.composer);

    wrap.append(UI.panel, UI.launcher);
    UI.wrap = wrap;
    document.body.append(host);
  }

  // ---- open / close ---------------------------------------------------------
  function open() {
    if (S.isOpen) return;
    S.isOpen = true;
    UI.panel.hidden = false;
    UI.wrap.classList.add("open");
    UI.launcher.setAttribute("aria-expanded", "true");
    UI.launcher.setAttribute("aria-label", t("minimise"));
    S.unread = 0;
    renderBadge();
    update(function (s) { s.open = true; });
    scrollDown(true);
    if (!S.conv && !S.ended) ensureConversation().catch(function () {});
    (S.ended ? UI.csat.querySelector("button") || UI.log : UI.input).focus();
  }
  function close(returnFocus) {
    if (!S.isOpen) return;
    S.isOpen = false;
    UI.panel.hidden = true;
    UI.wrap.classList.remove("open");
    UI.launcher.setAttribute("aria-expanded", "false");
    UI.launcher.setAttribute("aria-label", t("open"));
    update(function (s) { s.open = false; });
    if (returnFocus) UI.launcher.focus();
  }
  function toggle() { S.isOpen ? close(true) : open(); }
  function renderBadge() {
    UI.badge.hidden = !S.unread;
    UI.badge.textContent = S.unread > 9 ? "9+" : String(S.unread);
  }

  // ---- REST -----------------------------------------------------------------
  function ApiError(code, message, status, retryAfter) {
    this.code = code; this.message = message; this.status = status; this.retryAfter = retryAfter;
  }
  function api(method, path, body) {
    var headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (S.conv && path.indexOf("/v1/widget/") !== 0) headers.Authorization = "Bearer " + S.conv.token;
    return fetch(BASE + path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "omit" })
      .catch(function () { throw new ApiError("network", t("errNetwork"), 0); })
      .then(function (r) {
        return r.text().then(function (txt) {
          var data = null;
          try { data = txt ? JSON.parse(txt) : null; } catch (e) { /* not JSON */ }
          if (r.ok) return data;
          var e = (data && data.error) || {};
          var msg = e.message || r.status + " " + r.statusText;
          if (Array.isArray(e.details)) msg += " " + e.details.map(function (d) { return d.message || JSON.stringify(d); }).join("; ");
          // Retry-After is readable only when same-origin or exposed by CORS.
          throw new ApiError(e.code || "http_" + r.status, msg, r.status, +r.headers.get("Retry-After") || 0);
        });
      });
  }
  function showError(err) {
    var code = err && err.code, msg;
    if (code === "network") msg = t("errNetwork");
    else if (code === "rate_limited") msg = err.retryAfter ? t("errRateIn", { n: err.retryAfter }) : t("errRate");
    else if (code === "origin_not_allowed") msg = t("errOrigin");
    else if (code === "conversation_closed") msg = t("errClosed");
    else msg = (err && err.message) || t("errGeneric");
    UI.errText.textContent = msg;
    UI.err.dataset.code = code || "";
    UI.err.hidden = false;
  }

  function ensureConversation() {
    if (S.conv) return Promise.resolve(S.conv);
    if (!S.creating) {
      S.creating = api("POST", "/v1/widget/" + encodeURIComponent(TENANT) + "/conversations", { locale: LOCALE })
        .then(function (r) {
          S.conv = { id: r.conversation_id, token: r.token };
          update(function (s) {
            s.conversation_id = r.conversation_id;
            s.token = r.token;
            s.expires_at = Date.now() + (r.expires_in || 86400) * 1000;
          });
          S.creating = null;
          UI.err.hidden = true;
          connect();
          return S.conv;
        }, function (e) {
          S.creating = null;
          showError(e);
          // Messages are waiting: try again later unless this site is refused.
          if (outbox().length && (e.code === "network" || e.status === 429 || e.status >= 500)) {
            clearTimeout(S.retryTimer);
            S.retryTimer = setTimeout(function () { ensureConversation().catch(function () {}); }, (e.retryAfter || 10) * 1000);
          }
          throw e;
        });
    }
    return S.creating;
  }

  // Stored conversation: render its history, then go live.
  function resume() {
    var id = S.conv.id;
    var page = function (after) {
      return api("GET", "/v1/conversations/" + id + "/messages?after_seq=" + after + "&limit=200").then(function (r) {
        if (!S.conv || S.conv.id !== id) return;
        (r.messages || []).forEach(function (m) { onMessage(m, true); });
        if (r.next_after_seq != null) return page(r.next_after_seq);
      });
    };
    return page(0).then(function () {
      renderOutbox();
      connect();
    }, function (e) {
      if (e.status === 401 || e.status === 403 || e.status === 404) return expire();
      // Offline or server down: show what is queued, the socket retries.
      renderOutbox();
      if (e.code !== "network") showError(e);
      connect();
    });
  }
  // The token expired (or the conversation is gone): start over on next use.
  function expire() {
    reset();
    notice(t("expired"));
    if (S.isOpen || outbox().length) ensureConversation().catch(function () {});
  }

  // ---- WebSocket ------------------------------------------------------------
  function connect() {
    clearTimeout(S.timer);
    S.timer = 0;
    if (!S.conv || S.ws || S.ended) return;
    var ws = new WebSocket(WS_BASE + "/v1/ws?token=" + encodeURIComponent(S.conv.token));
    var opened = false;
    S.ws = ws;
    S.ready = false;
    linkState(navigator.onLine === false ? "offline" : "connecting");
    ws.onopen = function () { opened = true; };
    ws.onmessage = function (e) {
      if (S.ws !== ws) return;
      var f;
      try { f = JSON.parse(e.data); } catch (err) { return; }
      onFrame(f);
    };
    ws.onclose = function (e) {
      if (S.ws !== ws) return;
      S.ws = null;
      S.ready = false;
      S.inflight = null;
      if (!opened) S.failures++;
      if (e.code === 1008) S.attempt += 2; // rate limit: slow down
      linkState(navigator.onLine === false ? "offline" : "connecting");
      // Upgrades refused (an expired token is an HTTP 401 the page cannot see):
      // ask the REST API what is wrong now and then.
      if (S.failures && S.failures % 3 === 0 && navigator.onLine !== false) {
        api("GET", "/v1/conversations/" + S.conv.id).catch(function (err) {
          if (err.status === 401 || err.status === 403 || err.status === 404) expire();
        });
      }
      schedule();
    };
  }
  // Exponential backoff with full jitter, capped at 10 s.
  function schedule() {
    if (!S.conv || S.ended || S.ws) return;
    clearTimeout(S.timer);
    var cap = Math.min(10000, 500 * Math.pow(2, S.attempt++));
    S.timer = setTimeout(connect, 100 + Math.random() * cap);
  }
  // Drop the socket now, without waiting for a closing handshake (offline, end).
  function dropSocket() {
    var ws = S.ws;
    S.ws = null;
    S.ready = false;
    S.inflight = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onopen = null;
      try { ws.close(); } catch (e) { /* already closed */ }
    }
  }
  function sendFrame(f) {
    if (!S.ws || S.ws.readyState !== 1) return false;
    S.ws.send(JSON.stringify(f));
    return true;
  }

  var linkTimer = 0;
  function linkState(state) {
    clearTimeout(linkTimer);
    UI.link.dataset.state = state;
    if (state === "open" || S.ended || !S.conv) {
      UI.link.hidden = true;
    } else if (state === "offline") {
      UI.link.textContent = t("offline");
      UI.link.hidden = false;
    } else {
      // Brief reconnects do not flash a banner.
      linkTimer = setTimeout(function () { UI.link.textContent = t("connecting"); UI.link.hidden = false; }, 1500);
    }
    refreshQueued();
  }

  function onFrame(f) {
    if (f.conversation_id && S.conv && f.conversation_id !== S.conv.id) return;
    switch (f.type) {
      case "welcome":
        S.attempt = 0;
        S.failures = 0;
        sendFrame({ type: "hello", conversation_id: S.conv.id, last_seq: S.lastSeq });
        S.ready = true;
        linkState("open");
        flush();
        break;
      case "ack":
        onAck(f);
        break;
      case "message":
        if (f.message) onMessage(f.message, false);
        break;
      case "token":
        onToken(f);
        break;
      case "typing":
        if (f.sender === "agent") {
          S.agentTyping = !!f.on;
          clearTimeout(S.agentTypingTimer);
          // No server-side expiry of "on": forget it after a quiet while.
          if (f.on) S.agentTypingTimer = setTimeout(function () { S.agentTyping = false; renderTyping(); }, 15000);
          renderTyping();
        }
        break;
      case "status":
        setStatus(f, true);
        break;
      case "error":
        onError(f);
        break;
      default: // unknown frames are ignored
    }
  }

  // ---- sending --------------------------------------------------------------
  function submit() {
    var text = UI.input.value.trim();
    if (!text || S.ended) return;
    UI.input.value = "";
    autosize();
    typing(false);
    send(text);
    UI.input.focus();
  }
  function send(text) {
    text = String(text).trim();
    if (!text || S.ended) return;
    var item = { id: uuid(), text: text };
    update(function (s) { (s.outbox = s.outbox || []).push(item); });
    var el = bubble({ sender: "customer", text: text, client_msg_id: item.id }, "sending");
    S.byCid.set(item.id, el);
    insert(el);
    scrollDown(true);
    if (S.conv) flush();
    else ensureConversation().then(flush, function () {});
  }
  // One message in flight at a time: the next goes on its ack, so the server
  // stores them in the order typed. A frame dropped by the server's rate limit
  // gets no answer: resend after 8 s (same client_msg_id, so never doubled).
  function flush() {
    if (!S.ready) return;
    var head = outbox()[0];
    if (!head) { S.inflight = null; return; }
    if (S.inflight && S.inflight.id === head.id && Date.now() - S.inflight.at < 8000) return;
    if (sendFrame({ type: "message", conversation_id: S.conv.id, client_msg_id: head.id, text: head.text })) {
      S.inflight = { id: head.id, at: Date.now() };
    }
  }
  setInterval(flush, 4000);
  // The queue position is not pushed as the queue moves: ask again now and then.
  setInterval(function () {
    if (S.ready && S.status === "queued") sendFrame({ type: "hello", conversation_id: S.conv.id, last_seq: S.lastSeq });
  }, 20000);

  function settle(cid) {
    var had = false;
    update(function (s) {
      var before = (s.outbox || []).length;
      s.outbox = (s.outbox || []).filter(function (m) { return m.id !== cid; });
      had = s.outbox.length !== before;
    });
    if (S.inflight && S.inflight.id === cid) S.inflight = null;
    return had;
  }
  function onAck(f) {
    var el = S.byCid.get(f.client_msg_id);
    if (el && el.dataset.state === "sending") {
      el.dataset.state = "sent";
      el.dataset.seq = f.seq;
      setMeta(el, "");
      place(el);
    }
    if (settle(f.client_msg_id) && S.status === "bot") { S.botWorking = true; armBotTimer(); renderTyping(); }
    flush();
  }
  function onError(f) {
    if (f.client_msg_id) {
      // The message itself was refused (closed conversation, bad text…): it
      // would be refused again, so it leaves the queue marked as not sent.
      var el = S.byCid.get(f.client_msg_id);
      settle(f.client_msg_id);
      if (el && el.dataset.state !== "sent") {
        el.dataset.state = "failed";
        setMeta(el, t("failed"));
      }
      flush();
    }
    if (f.code === "rate_limited") { S.inflight = null; setTimeout(flush, 3000); }
    showError(f);
  }
  function renderOutbox() {
    outbox().forEach(function (m) {
      if (S.byCid.has(m.id)) return;
      var el = bubble({ sender: "customer", text: m.text, client_msg_id: m.id }, "sending");
      S.byCid.set(m.id, el);
      insert(el);
    });
    scrollDown(true);
  }
  function refreshQueued() {
    S.byCid.forEach(function (el) { if (el.dataset.state === "sending") setMeta(el, S.ready ? t("sending") : t("queued")); });
  }

  // Customer typing: "on" at most every 3 s while typing, "off" after 4 s idle or on send.
  function onInput() {
    autosize();
    if (!UI.input.value.trim()) return typing(false);
    if (!S.typingOn || Date.now() - S.typingSent > 3000) typing(true);
    clearTimeout(S.typingIdle);
    S.typingIdle = setTimeout(function () { typing(false); }, 4000);
  }
  function typing(on) {
    clearTimeout(S.typingIdle);
    if (!on && !S.typingOn) return;
    if (S.conv && sendFrame({ type: "typing", conversation_id: S.conv.id, on: on })) {
      S.typingOn = on;
      S.typingSent = Date.now();
    } else if (!on) S.typingOn = false;
  }
  function onKey(e) {
    // Korean (and other) IME: Enter that confirms a composition must not send.
    if (e.key !== "Enter" || e.isComposing || e.keyCode === 229) return;
    if (e.shiftKey) return;
    e.preventDefault();
    submit();
  }
  function autosize() {
    UI.input.style.height = "auto";
    UI.input.style.height = Math.min(120, UI.input.scrollHeight + 2) + "px";
  }

  // ---- rendering messages ---------------------------------------------------
  function label(m) {
    if (m.sender === "bot") return t("bot");
    if (m.sender === "agent") {
      var name = m.sender_id && S.names[m.sender_id];
      return name ? t("agentNamed", { name: name }) : t("agent");
    }
    return null;
  }
  S.names = {};

  function bubble(m, state) {
    var el = h("div", { class: "msg " + m.sender, "data-aicc": "msg", "data-sender": m.sender, "data-state": state, "data-sender-id": m.sender_id });
    if (m.sender === "system") {
      el.textContent = m.text;
      return el;
    }
    var who = label(m);
    if (who) el.append(h("div", { class: "who" }, who));
    else el.append(h("span", { class: "sr" }, t("you") + ": "));
    var text = h("div", { class: "bubble" });
    richText(text, m.text);
    el.append(text);
    if (m.citations && m.citations.length) {
      var ol = h("ol");
      m.citations.forEach(function (c) { ol.append(h("li", { "data-article-id": c.article_id }, c.title)); });
      el.append(h("details", { "data-aicc": "sources" }, h("summary", null, t("sources", { n: m.citations.length })), ol));
    }
    if (m.quick_replies && m.quick_replies.length && state === "final") {
      var qr = h("div", { class: "qr" });
      m.quick_replies.forEach(function (q) {
        qr.append(h("button", { type: "button", "data-aicc": "quick-reply", onclick: function () { send(q); } }, q));
      });
      el.append(qr);
    }
    var meta = h("div", { class: "meta" }, h("time", null, time(m.created_at)), h("span", { class: "state" }));
    if (m.sender === "bot" && state === "final" && m.id) meta.append.apply(meta, thumbs(m.id));
    el.append(meta);
    if (state === "preview") el.setAttribute("aria-hidden", "true"); // announced once final
    return el;
  }
  function setMeta(el, text) {
    var s = el.querySelector(".state");
    if (s) s.textContent = text;
  }
  function thumbs(id) {
    var rated = (load().ratings || {})[id];
    var note = h("span", { class: rated ? "fb" : "sr", "aria-live": "polite" }, rated ? t("fbThanks") : null);
    var mk = function (rating, name, key) {
      var btn = h("button", {
        class: "thumb", type: "button", "data-aicc": rating === "up" ? "thumb-up" : "thumb-down", "aria-label": t(key),
        title: t(key), "aria-pressed": String(rated === rating), disabled: !!rated,
      }, icon(name));
      btn.addEventListener("click", function () {
        var btns = btn.parentNode.querySelectorAll(".thumb");
        btns.forEach(function (b) { b.disabled = true; });
        api("POST", "/v1/conversations/" + S.conv.id + "/feedback", { message_id: id, rating: rating }).then(function () {
          update(function (s) { (s.ratings = s.ratings || {})[id] = rating; });
          btn.setAttribute("aria-pressed", "true");
          note.textContent = t("fbThanks");
          note.className = "fb";
        }, function (err) {
          btns.forEach(function (b) { b.disabled = false; });
          showError(err);
        });
      });
      return btn;
    };
    return [mk("up", "up", "helpful"), mk("down", "dn", "notHelpful"), note];
  }

  // Keep the log in seq order: server messages go before anything later or
  // still pending (own unsent bubbles, a streaming preview).
  function insert(el) {
    UI.empty.remove();
    var seq = el.dataset.seq ? +el.dataset.seq : null;
    var kids = UI.log.children;
    if (seq != null) {
      for (var i = 0; i < kids.length; i++) {
        var k = kids[i];
        if (k === el) continue;
        if ((k.dataset.seq && +k.dataset.seq > seq) || k.dataset.state === "sending" || k.dataset.state === "preview") {
          UI.log.insertBefore(el, k);
          return;
        }
      }
    }
    UI.log.append(el);
  }
  function place(el) {
    var next = el.nextElementSibling;
    if (!next) return;
    if (next.dataset.seq && +next.dataset.seq > +el.dataset.seq) return;
    insert(el);
  }
  function notice(text) {
    UI.empty.remove();
    UI.log.append(h("p", { class: "notice", "data-aicc": "notice" }, text));
    scrollDown(false);
  }
  function scrollDown(force) {
    var log = UI.log;
    if (force || log.scrollHeight - log.scrollTop - log.clientHeight < 120) log.scrollTop = log.scrollHeight;
  }

  function onMessage(m, history) {
    if (!m || S.byId.has(m.id)) return; // delivered once per id
    if (m.seq > S.lastSeq) S.lastSeq = m.seq;
    var near = UI.log.scrollHeight - UI.log.scrollTop - UI.log.clientHeight < 120;
    var el = m.client_msg_id && m.sender === "customer" && S.byCid.get(m.client_msg_id);
    if (el) {
      // Our own optimistic bubble: the stored text (PII redacted) wins.
      richText(el.querySelector(".bubble"), m.text);
      el.dataset.state = "sent";
      el.dataset.seq = m.seq;
      el.dataset.id = m.id;
      el.querySelector("time").textContent = time(m.created_at);
      setMeta(el, "");
      place(el);
      if (settle(m.client_msg_id)) flush();
    } else {
      el = bubble(m, m.sender === "customer" ? "sent" : "final");
      el.dataset.seq = m.seq;
      el.dataset.id = m.id;
      insert(el);
      if (m.client_msg_id) {
        S.byCid.set(m.client_msg_id, el);
        if (settle(m.client_msg_id)) flush(); // stored before a reload: no resend needed
      }
    }
    S.byId.set(m.id, el);
    if (m.sender === "bot") {
      // The authoritative reply replaces the streamed preview (turns run one at a time).
      if (S.preview) { S.preview.el.remove(); S.preview = null; }
      S.botWorking = false;
    }
    if (m.sender === "agent") S.agentTyping = false;
    renderTyping();
    refreshQuickReplies();
    if (!history && m.sender !== "customer" && !S.isOpen) { S.unread++; renderBadge(); }
    scrollDown(near || m.sender === "customer");
  }
  function onToken(f) {
    var near = UI.log.scrollHeight - UI.log.scrollTop - UI.log.clientHeight < 120;
    if (!S.preview || S.preview.replyTo !== f.reply_to) {
      if (S.preview) S.preview.el.remove();
      var el = bubble({ sender: "bot", text: "" }, "preview");
      el.dataset.replyTo = f.reply_to;
      S.preview = { replyTo: f.reply_to, el: el, text: "" };
      insert(el);
    }
    S.preview.text += f.text || "";
    richText(S.preview.el.querySelector(".bubble"), S.preview.text);
    S.botWorking = false;
    renderTyping();
    scrollDown(near);
  }
  // Quick replies only on the latest message, and only while the bot answers.
  function refreshQuickReplies() {
    var msgs = UI.log.querySelectorAll(".msg[data-seq]");
    var last = msgs[msgs.length - 1];
    UI.log.querySelectorAll(".qr").forEach(function (q) { q.hidden = q.parentNode !== last || S.ended; });
  }
  function armBotTimer() {
    clearTimeout(S.botTimer);
    S.botTimer = setTimeout(function () { S.botWorking = false; renderTyping(); }, 60000);
  }
  function renderTyping() {
    var agentName = S.agent && S.agent.name;
    var show = (S.botWorking && S.status === "bot") || S.agentTyping;
    UI.typing.hidden = !show;
    UI.typing.dataset.who = S.agentTyping ? "agent" : "bot";
    UI.typingText.textContent = S.agentTyping ? t("typingAgent", { name: agentName || t("agent") }) : t("typingBot");
  }

  // ---- status, handoff, close, CSAT -----------------------------------------
  function setStatus(f, live) {
    var prev = S.status;
    S.status = f.status;
    S.agent = f.agent || null;
    if (S.agent && S.names[S.agent.id] !== S.agent.name) {
      // History is rendered before the first status names the agent.
      S.names[S.agent.id] = S.agent.name;
      UI.log.querySelectorAll('.agent[data-sender-id="' + S.agent.id + '"] .who').forEach(function (w) {
        w.textContent = t("agentNamed", { name: S.agent.name });
      });
    }
    var text = t("stBot");
    if (f.status === "queued") text = f.queue_position ? t("stQueuedPos", { n: f.queue_position }) : t("stQueued");
    else if (f.status === "assigned") text = t("stAssigned", { name: (S.agent && S.agent.name) || t("agent") });
    else if (f.status === "closed") text = t("stClosed");
    UI.status.textContent = text;
    UI.status.dataset.status = f.status;
    UI.handoff.hidden = f.status !== "bot";
    if (live && prev && prev !== f.status) {
      if (f.status === "assigned" && S.agent) notice(t("nAssigned", { name: S.agent.name }));
      if (f.status === "bot" && (prev === "queued" || prev === "assigned")) notice(t("nReleased"));
      if (f.status === "closed") notice(t("stClosed"));
    }
    if (f.status !== "bot") S.botWorking = false;
    renderTyping();
    if (f.status === "closed") ended();
  }
  function handoff() {
    ensureConversation().then(function (c) {
      return api("POST", "/v1/conversations/" + c.id + "/handoff", {});
    }).then(function (r) {
      // The status frame follows on the socket; offline, show the answer now.
      if (!S.ready && r && r.conversation) setStatus({ status: r.conversation.status }, true);
    }, showError);
  }
  function showConfirm(on) {
    UI.confirm.hidden = !on;
    (on ? UI.confirmYes : UI.close).focus();
  }
  function endChat() {
    UI.confirm.hidden = true;
    if (!S.conv) return;
    api("POST", "/v1/conversations/" + S.conv.id + "/close", {}).then(function () {
      setStatus({ status: "closed" }, true);
    }, function (e) {
      if (e.code === "invalid_transition") setStatus({ status: "closed" }, true);
      else showError(e);
    });
  }
  function ended() {
    if (S.ended) return;
    S.ended = true;
    UI.input.disabled = UI.send.disabled = true;
    UI.input.placeholder = t("closedPh");
    UI.close.hidden = UI.handoff.hidden = true;
    UI.confirm.hidden = true;
    UI.composer.hidden = true;
    dropSocket();
    linkState("open");
    // Anything still queued can no longer be delivered.
    outbox().forEach(function (m) {
      var el = S.byCid.get(m.id);
      if (el) { el.dataset.state = "failed"; setMeta(el, t("failed")); }
    });
    update(function (s) { s.outbox = []; });
    refreshQuickReplies();
    renderCsat();
  }
  function renderCsat() {
    UI.csat.textContent = "";
    UI.csat.hidden = false;
    var box = h("div", { "data-aicc": "csat" });
    if (load().csat) {
      box.dataset.state = "done";
      box.append(h("p", { role: "status" }, t("csatThanks")));
    } else {
      var scores = h("div", { class: "scores", role: "group", "aria-label": t("csatQ") });
      for (var n = 1; n <= 5; n++) {
        scores.append(h("button", { type: "button", "data-score": n, "aria-label": t("csatN", { n: n }), onclick: rate.bind(null, n) }, String(n)));
      }
      box.append(h("p", null, t("csatQ")), scores, h("div", { class: "scale", "aria-hidden": "true" }, h("span", null, t("csatLo")), h("span", null, t("csatHi"))));
    }
    UI.csat.append(box, h("button", { class: "new", type: "button", "data-aicc": "new", onclick: startNew }, t("newConv")));
    scrollDown(true);
  }
  function rate(score) {
    UI.csat.querySelectorAll("[data-score]").forEach(function (b) { b.disabled = true; });
    api("POST", "/v1/conversations/" + S.conv.id + "/csat", { score: score }).then(function () {
      update(function (s) { s.csat = score; });
      renderCsat();
      UI.csat.querySelector("[data-aicc=new]").focus();
    }, function (e) {
      UI.csat.querySelectorAll("[data-score]").forEach(function (b) { b.disabled = false; });
      showError(e);
    });
  }

  // Forget the conversation (storage and screen).
  function reset() {
    dropSocket();
    clearTimeout(S.timer);
    update(function (s) {
      var keepOpen = s.open;
      Object.keys(s).forEach(function (k) { if (k !== "outbox") delete s[k]; });
      s.open = keepOpen;
    });
    S.conv = null;
    S.ended = false;
    S.status = null;
    S.agent = null;
    S.lastSeq = 0;
    S.preview = null;
    S.botWorking = S.agentTyping = false;
    S.byId.clear();
    S.byCid.clear();
    S.attempt = S.failures = 0;
    UI.log.textContent = "";
    UI.log.append(UI.empty);
    UI.csat.hidden = true;
    UI.composer.hidden = false;
    UI.input.disabled = UI.send.disabled = false;
    UI.input.placeholder = t("placeholder");
    UI.close.hidden = false;
    UI.handoff.hidden = false;
    UI.status.textContent = t("stBot");
    UI.err.hidden = true;
    renderTyping();
    renderOutbox();
  }
  function startNew() {
    update(function (s) { s.outbox = []; });
    reset();
    ensureConversation().catch(function () {});
    UI.input.focus();
  }

  // ---- start ----------------------------------------------------------------
  function start() {
    build();
    UI.status.textContent = t("stBot");
    var s = load();
    if (s.conversation_id && s.token && (s.expires_at || 0) > Date.now() + 30000) {
      S.conv = { id: s.conversation_id, token: s.token };
      resume();
    } else {
      if (s.conversation_id) update(function (x) { delete x.conversation_id; delete x.token; delete x.expires_at; delete x.csat; delete x.ratings; });
      renderOutbox();
      if (outbox().length) ensureConversation().catch(function () {});
    }
    if (s.open) open();

    window.addEventListener("online", function () {
      // Back online: reconnect now rather than at the next backoff step.
      S.attempt = 0;
      if (!S.conv) { if (outbox().length || S.isOpen) ensureConversation().catch(function () {}); return; }
      if (!S.ws) connect();
    });
    window.addEventListener("offline", function () {
      // A socket over a dead network can look open for a long time; drop it
      // and queue until "online" (or the next backoff attempt) reconnects.
      if (S.ws) { dropSocket(); linkState("offline"); schedule(); }
    });
    window.dispatchEvent(new CustomEvent("aicc:ready"));
  }

  window.AICCWidget = {
    version: "1",
    storageKey: KEY,
    open: function () { open(); },
    close: function () { close(false); },
    toggle: function () { toggle(); },
    /** Sends text as the customer (opens the panel). */
    send: function (text) { open(); send(text); },
    get conversationId() { return S.conv && S.conv.id; },
    get connected() { return S.ready; },
    /** Test hook: drops the socket as a network failure would; it reconnects by itself. */
    _dropSocket: function () { if (S.ws) { dropSocket(); linkState("connecting"); schedule(); } },
  };

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
