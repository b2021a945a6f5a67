// The agent-assist dashboard: sign-in, the live queue, several open
// conversations in tabs, and the actions. One WebSocket carries everything
// live (queue snapshots, messages, typing, status, assist); REST loads and acts.

import { Api, clearSession, loadSession, uuid } from "../common/api.js";
import { Socket } from "../common/socket.js";
import { detectLocale, makeT } from "../common/i18n.js";
import { h, replace } from "../common/dom.js";
import { dict } from "./strings.js";
import { renderQueue, tickQueue } from "./queue.js";
import { ConversationView } from "./conversation.js";
import { errorText, showNotice } from "./ui.js";

const root = document.getElementById("app");
const ACK_WAIT_MS = 8000; // no ack by then: the same client_msg_id goes over REST (idempotent)
const TYPING_IDLE_MS = 3000;
const TYPING_REFRESH_MS = 4000;
const CANNED_TTL_MS = 60_000;

const app = {
  locale: detectLocale(document.documentElement.dataset.locale),
  t: null,
  api: null,
  socket: null,
  me: null, // {id, name, role, tenant}
  queue: { items: [], online: [], fromSocket: false },
  views: new Map(), // conversation id → ConversationView, in tab order
  active: null,
  convCache: new Map(), // conversation id → Conversation (customer info for the queue)
  names: new Map(), // user id → name, from status frames and the admin user list
  teams: new Set(),
  dismissed: new Set(), // tabs of my conversations the agent closed: not auto-reopened
  agents: [], // for transfer to an agent (admins only: agents cannot list users)
  canned: null,
  link: "connecting",
  ui: {},
};
app.t = makeT(dict, app.locale);
document.documentElement.lang = app.locale;

// ---- sign-in ---------------------------------------------------------------

function showLogin(message, kind = "error") {
  const { t } = app;
  document.title = t("title");
  const params = new URLSearchParams(location.search);
  const notices = h("div", { class: "notices", role: "alert", "aria-live": "assertive" });
  const field = (key, attrs) =>
    h("div", {}, h("label", { for: `login-${key}` }, t(key)), h("input", { id: `login-${key}`, name: key, "data-aicc": `login-${key}`, required: true, ...attrs }));
  const tenant = field("tenant", { value: params.get("tenant") || localStorage.getItem("aicc:tenant") || "demo", autocomplete: "organization" });
  const email = field("email", { type: "email", autocomplete: "username" });
  const password = field("password", { type: "password", autocomplete: "current-password" });
  const submit = h("button", { type: "submit", class: "primary", "data-aicc": "login-submit" }, t("sign_in"));
  const form = h(
    "form",
    { class: "login panel", "data-aicc": "login-form", "aria-labelledby": "login-title" },
    h("div", { class: "row" }, h("h1", { id: "login-title", class: "grow" }, t("login_title")), langButton()),
    notices,
    tenant,
    email,
    password,
    submit,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = (name) => form.elements[name].value.trim();
    submit.disabled = true;
    submit.textContent = t("signing_in");
    replace(notices);
    try {
      const api = new Api();
      const session = await api.login(v("tenant"), v("email"), form.elements.password.value);
      localStorage.setItem("aicc:tenant", v("tenant"));
      startDashboard(session);
    } catch (err) {
      showNotice(notices, t, err.retryAfter ? `${errorText(err)} (${err.retryAfter}s)` : errorText(err), { details: err.details });
      submit.disabled = false;
      submit.textContent = t("sign_in");
      form.elements.password.select();
    }
  });
  replace(root, form);
  if (message) showNotice(notices, t, message, { kind });
  (form.elements.email.value ? form.elements.password : form.elements.email).focus();
}

function langButton() {
  const { t } = app;
  return h(
    "button",
    { type: "button", class: "lang", "data-aicc": "lang", lang: app.locale === "ko" ? "en" : "ko", "aria-label": t("lang_switch_label"), onclick: () => setLocale(app.locale === "ko" ? "en" : "ko") },
    t("lang_switch"),
  );
}

function setLocale(locale) {
  app.locale = locale;
  localStorage.setItem("aicc:locale", locale);
  app.t = makeT(dict, locale);
  document.documentElement.lang = locale;
  if (!app.me) return showLogin();
  buildShell();
  for (const view of app.views.values()) {
    view.build();
    app.ui.views.append(view.root);
  }
  renderAll();
}

// ---- the dashboard ---------------------------------------------------------

function startDashboard(session) {
  const tabs = savedTabs(); // read before the first render saves the (empty) tab list
  app.me = { ...session.user };
  app.names.set(app.me.id, app.me.name);
  app.api = new Api({ token: session.token, onUnauthorized: () => logout(app.t("session_expired")) });
  app.loggedOut = false;
  clearTimeout(app.expiryTimer);
  app.expiryTimer = setTimeout(() => logout(app.t("session_expired")), Math.max(0, session.expiresAt - Date.now()));
  buildShell();
  renderAll();
  app.socket = new Socket({ token: () => session.token, onFrame, onState });
  app.socket.start();
  restoreTabs(tabs);
  loadQueueRest();
  if (app.me.role === "admin") loadAgents();
  clearInterval(app.ticker);
  app.ticker = setInterval(() => tickQueue(app, app.ui.queue), 1000);
}

function logout(message, kind = "error") {
  if (app.loggedOut) return;
  app.loggedOut = true;
  clearTimeout(app.expiryTimer);
  clearInterval(app.ticker);
  app.socket?.stop();
  app.socket = null;
  for (const view of app.views.values()) view.destroy();
  app.views.clear();
  app.active = null;
  app.me = null;
  app.queue = { items: [], online: [], fromSocket: false };
  app.convCache.clear();
  app.names.clear();
  app.teams.clear();
  app.dismissed.clear();
  app.agents = [];
  app.canned = null;
  clearSession();
  sessionStorage.removeItem(TABS_KEY);
  showLogin(message, kind);
}

function buildShell() {
  const { t, me } = app;
  const ui = app.ui;
  ui.link = h("span", { class: "link", role: "status", "data-aicc": "link-status" });
  ui.online = h("span", { class: "muted online", "data-aicc": "online-agents" });
  ui.notices = h("div", { class: "notices global", role: "alert", "aria-live": "assertive", "data-aicc": "notices" });
  ui.announcer = h("div", { class: "sr-only", "aria-live": "polite", "data-aicc": "announcer" });
  ui.queue = h("div", { class: "queue", "data-aicc": "queue" });
  ui.tabs = h("div", { class: "tabs", role: "tablist", "aria-label": t("tabs"), "data-aicc": "tabs", onkeydown: tabKeys });
  ui.views = h("div", { class: "views" });
  ui.empty = h("p", { class: "empty-work muted", "data-aicc": "no-conversation" }, t("no_conversation"));
  replace(
    root,
    h(
      "header",
      { class: "topbar" },
      h("h1", {}, t("title")),
      ui.link,
      ui.online,
      h("span", { class: "spacer" }),
      h("span", { class: "me", "data-aicc": "me" }, me.name, me.role === "admin" ? h("span", { class: "tag" }, "admin") : null),
      langButton(),
      h("button", { type: "button", "data-aicc": "logout", onclick: () => logout(t("signed_out"), "info") }, t("sign_out")),
    ),
    ui.notices,
    ui.announcer,
    h(
      "div",
      { class: "layout" },
      h("aside", { class: "queue-pane", "aria-labelledby": "queue-title" }, h("h2", { id: "queue-title", class: "pane-title" }, t("queue")), ui.queue),
      h("main", { class: "work" }, ui.tabs, ui.empty, ui.views),
    ),
  );
}

function renderAll() {
  renderLink();
  renderQueue(app, app.ui.queue);
  renderTabs();
}

function renderLink() {
  const { t, ui } = app;
  ui.link.textContent = t(`link_${app.link}`);
  ui.link.dataset.state = app.link;
  ui.online.textContent = app.queue.fromSocket ? t("online_agents", { n: app.queue.online.length }) : "";
}

function notify(text, opts) {
  showNotice(app.ui.notices, app.t, text, opts);
}

// ---- tabs ------------------------------------------------------------------

const TABS_KEY = "aicc:agent:tabs";

/** The open tabs survive a reload of this browser tab (sessionStorage, like the session). */
function saveTabs() {
  sessionStorage.setItem(TABS_KEY, JSON.stringify({ ids: [...app.views.keys()], active: app.active }));
}

function savedTabs() {
  try {
    return JSON.parse(sessionStorage.getItem(TABS_KEY) || "{}");
  } catch {
    return {};
  }
}

function restoreTabs({ ids = [], active = null }) {
  for (const id of ids) app.openConversation(id);
  if (active && app.views.has(active)) activate(active);
}

function renderTabs() {
  const { t } = app;
  saveTabs();
  const tabs = [...app.views.values()].map((view) => {
    const selected = view.id === app.active;
    return h(
      "div",
      { class: `tab-wrap${selected ? " selected" : ""}`, role: "presentation" },
      h(
        "button",
        {
          type: "button",
          role: "tab",
          id: `tab-${view.id}`,
          class: `tab ${view.status || ""}`,
          "aria-selected": selected ? "true" : "false",
          "aria-controls": `panel-${view.id}`,
          tabindex: selected ? "0" : "-1",
          "data-aicc": "tab",
          "data-conversation-id": view.id,
          "data-status": view.status || "",
          onclick: () => activate(view.id),
        },
        h("span", { class: `dot ${view.status || ""}`, "aria-hidden": "true" }),
        view.label(),
        view.unread ? h("span", { class: "badge", "data-aicc": "unread", "aria-label": t("unread", { n: view.unread }) }, String(view.unread)) : null,
      ),
      h("button", { type: "button", class: "tab-close link", "data-aicc": "tab-close", "aria-label": t("close_tab", { name: view.label() }), onclick: () => closeTab(view.id) }, "×"),
    );
  });
  replace(app.ui.tabs, tabs);
  app.ui.tabs.hidden = !tabs.length;
  app.ui.empty.hidden = !!app.active;
  const unread = [...app.views.values()].reduce((n, v) => n + v.unread, 0);
  document.title = unread ? `(${unread}) ${t("title")}` : t("title");
}

function tabKeys(e) {
  const ids = [...app.views.keys()];
  const i = ids.indexOf(app.active);
  let next = null;
  if (e.key === "ArrowRight") next = ids[(i + 1) % ids.length];
  else if (e.key === "ArrowLeft") next = ids[(i - 1 + ids.length) % ids.length];
  else if (e.key === "Home") next = ids[0];
  else if (e.key === "End") next = ids[ids.length - 1];
  if (!next) return;
  e.preventDefault();
  activate(next);
  app.ui.tabs.querySelector(`[data-aicc="tab"][data-conversation-id="${next}"]`)?.focus();
}

function activate(id) {
  app.active = id;
  for (const view of app.views.values()) view.setActive(view.id === id);
  renderTabs();
  renderQueue(app, app.ui.queue);
}

function closeTab(id) {
  const view = app.views.get(id);
  if (!view) return;
  const ids = [...app.views.keys()];
  const i = ids.indexOf(id);
  app.socket?.unfollow(id);
  view.destroy();
  app.views.delete(id);
  if (view.mine) app.dismissed.add(id); // still listed under Mine; not reopened by itself
  if (app.active === id) {
    const next = ids[i + 1] || ids[i - 1] || null;
    if (next) activate(next);
    else {
      app.active = null;
      renderTabs();
      renderQueue(app, app.ui.queue);
    }
  } else renderTabs();
}

// ---- what the modules call ---------------------------------------------------

app.openConversation = (id, { activate: show = false } = {}) => {
  let view = app.views.get(id);
  if (!view) {
    view = new ConversationView(app, id);
    app.views.set(id, view);
    app.ui.views.append(view.root);
    view.load();
  }
  if (show || !app.active) activate(id);
  else renderTabs();
  return view;
};

app.agentName = (id, fallback) => {
  if (!id) return fallback || app.t("unknown_agent");
  if (id === app.me?.id) return `${app.t("you")} (${app.me.name})`;
  return app.names.get(id) || fallback || app.t("unknown_agent");
};

app.onViewChanged = () => {
  renderTabs();
  renderQueue(app, app.ui.queue);
};

app.onAssistChanged = () => renderQueue(app, app.ui.queue);

app.loadCanned = async () => {
  if (!app.canned || Date.now() - app.canned.at > CANNED_TTL_MS) {
    const r = await app.api.get("/v1/admin/canned");
    app.canned = { at: Date.now(), items: r.canned || [] };
  }
  return app.canned.items;
};

app.claim = async (id, btn) => {
  const { t } = app;
  if (btn) {
    btn.disabled = true;
    btn.textContent = t("claiming");
  }
  try {
    const r = await app.api.post(`/v1/conversations/${id}/claim`);
    const view = app.openConversation(id, { activate: true });
    view.updateConversation(r.conversation);
    view.composer.focus();
  } catch (e) {
    if (e.status === 401) return;
    if (e.status !== 409) {
      notify(`${t("action_failed", { action: t("claim"), message: errorText(e) })}${e.code ? ` (${e.code})` : ""}`);
      return;
    }
    // Lost the race (or auto-assignment was faster): who has it now?
    let holder = null;
    try {
      holder = (await app.api.get(`/v1/conversations/${id}`)).conversation;
    } catch { /* the notice below still explains */ }
    if (holder) app.views.get(id)?.updateConversation(holder);
    if (holder?.status === "assigned" && holder.agent_id === app.me.id) {
      app.openConversation(id, { activate: true }).updateConversation(holder);
      return;
    }
    const msg = holder?.status === "assigned"
      ? t("claimed_by", { name: app.agentName(holder.agent_id, t("another_agent")) })
      : errorText(e);
    notify(`${msg} (${e.code})`, { key: `claim-${id}` });
    loadQueueRest();
  } finally {
    if (btn?.isConnected) {
      btn.disabled = false;
      btn.textContent = t("claim");
    }
  }
};

/** Sends as the agent: over the socket (ack/error), else REST; retried with the same id. */
app.sendMessage = (view, text) => {
  const clientMsgId = uuid();
  view.addPending(clientMsgId, text);
  deliver(view, clientMsgId);
};

app.retrySend = (view, clientMsgId) => deliver(view, clientMsgId);

function deliver(view, clientMsgId) {
  const p = view.pending.get(clientMsgId);
  if (!p) return;
  p.state = "sending";
  view.renderPending();
  clearTimeout(p.timer);
  const frame = { type: "message", conversation_id: view.id, client_msg_id: clientMsgId, text: p.text };
  if (app.socket?.send(frame)) {
    p.timer = setTimeout(() => {
      if (view.pending.get(clientMsgId) === p && p.acked === undefined && p.state === "sending") postRest(view, clientMsgId);
    }, ACK_WAIT_MS);
  } else {
    postRest(view, clientMsgId);
  }
}

async function postRest(view, clientMsgId) {
  const p = view.pending.get(clientMsgId);
  if (!p) return;
  try {
    const r = await app.api.post(`/v1/conversations/${view.id}/messages`, { client_msg_id: clientMsgId, text: p.text });
    view.pending.delete(clientMsgId);
    view.addMessage(r.message);
    view.renderPending();
    if (!app.socket?.open) view.notify(app.t("sent_rest"), { kind: "info", key: "sent-rest" });
  } catch (e) {
    if (e.status === 401) return;
    view.failPending(clientMsgId, e);
  }
}

/** Typing frames while the agent writes: on (refreshed), off when idle or sent. */
app.typing = (view, on) => {
  const st = (view.typingOut ||= { on: false, at: 0, timer: null });
  clearTimeout(st.timer);
  if (on && view.canReply()) {
    if (!st.on || Date.now() - st.at > TYPING_REFRESH_MS) {
      if (app.socket?.send({ type: "typing", conversation_id: view.id, on: true })) {
        st.on = true;
        st.at = Date.now();
      }
    }
    st.timer = setTimeout(() => app.typing(view, false), TYPING_IDLE_MS);
  } else if (st.on) {
    app.socket?.send({ type: "typing", conversation_id: view.id, on: false });
    st.on = false;
  }
};

// ---- REST loads --------------------------------------------------------------

/** The queue from REST: before the first socket snapshot, or while it is down. */
async function loadQueueRest() {
  try {
    const [q, a] = await Promise.all(
      ["queued", "assigned"].map((status) => app.api.get("/v1/conversations", { status, limit: 200 })),
    );
    if (!app.me) return; // signed out meanwhile
    const convs = [...q.conversations, ...a.conversations];
    for (const c of convs) {
      app.convCache.set(c.id, c);
      if (c.team) app.teams.add(c.team);
    }
    if (!app.queue.fromSocket || !app.socket?.open) {
      const old = new Map(app.queue.items.map((i) => [i.conversation_id, i]));
      const now = Date.now();
      app.queue.items = convs.map((c) => ({
        conversation_id: c.id,
        status: c.status,
        waiting_ms: Math.max(0, now - Date.parse(c.status_at)),
        receivedAt: now,
        agent_id: c.agent_id ?? null,
        team: c.team ?? null,
        preview: old.get(c.id)?.preview || "",
      }));
      adoptMine();
    }
    renderQueue(app, app.ui.queue);
  } catch (e) {
    if (e.status !== 401) notify(errorText(e), { key: "queue-load" });
  }
}

async function loadAgents() {
  try {
    const { users } = await app.api.get("/v1/admin/users");
    if (!app.me) return;
    for (const u of users) {
      app.names.set(u.id, u.name);
      for (const team of u.teams || []) app.teams.add(team);
    }
    app.agents = users.filter((u) => u.id !== app.me.id);
  } catch (e) {
    if (e.status !== 401) notify(errorText(e), { key: "users-load" });
  }
}

/** Conversations assigned to me (claimed elsewhere, auto-assigned) get a tab. */
function adoptMine() {
  const mine = new Set();
  for (const item of app.queue.items) {
    if (item.status !== "assigned" || item.agent_id !== app.me.id) continue;
    mine.add(item.conversation_id);
    if (!app.views.has(item.conversation_id) && !app.dismissed.has(item.conversation_id)) app.openConversation(item.conversation_id);
  }
  // Assigned to me again later (after a transfer away and back): a new assignment.
  for (const id of app.dismissed) if (!mine.has(id)) app.dismissed.delete(id);
}

// ---- the socket ----------------------------------------------------------------

function onState(state, info = {}) {
  app.link = state;
  if (!app.me) return;
  renderLink();
  if (state === "open") {
    // Resend what never got an ack, with the same client_msg_id (never stored twice).
    for (const view of app.views.values()) {
      for (const [id, p] of view.pending) if (p.state === "sending" && p.acked === undefined) deliver(view, id);
    }
    return;
  }
  if (state === "closed") {
    if (info.code === 1008 && info.reason === "user no longer exists") return logout(app.t("session_expired"));
    // A 401 at the upgrade looks like a plain drop (1006): a REST call tells.
    if (!loadSession()) return logout(app.t("session_expired"));
    if (app.socket?.attempt >= 2) app.api.get("/v1/conversations", { status: "queued", limit: 1 }).catch(() => {});
  }
}

let knownWaiting = null;

function onFrame(f) {
  const view = f.conversation_id ? app.views.get(f.conversation_id) : null;
  switch (f.type) {
    case "welcome":
      if (f.user) {
        app.me.name = f.user.name;
        app.names.set(f.user.id, f.user.name);
      }
      for (const id of f.conversations || []) if (!app.dismissed.has(id)) app.openConversation(id);
      break;
    case "queue":
      onQueue(f);
      break;
    case "message":
      if (view && view.addMessage(f.message)) {
        const m = f.message;
        const own = m.sender === "agent" && m.sender_id === app.me.id;
        if (!own && (app.active !== view.id || document.hidden)) {
          view.unread += 1;
          renderTabs();
          renderQueue(app, app.ui.queue);
        }
      }
      break;
    case "token":
      view?.onToken(f);
      break;
    case "typing":
      view?.onTyping(f);
      break;
    case "status":
      if (f.agent) app.names.set(f.agent.id, f.agent.name);
      view?.onStatus(f);
      break;
    case "assist":
      view?.assist.onFrame(f);
      break;
    case "ack":
      view?.onAck(f);
      break;
    case "error":
      onError(f, view);
      break;
    default:
      break; // unknown frame types are ignored (protocol rule)
  }
}

function onQueue(f) {
  const now = Date.now();
  app.queue = {
    items: (f.conversations || []).map((c) => ({ ...c, receivedAt: now })),
    online: f.online_agents || [],
    fromSocket: true,
  };
  for (const c of app.queue.items) if (c.team) app.teams.add(c.team);
  const waiting = app.queue.items.filter((c) => c.status === "queued");
  if (knownWaiting) {
    const fresh = waiting.filter((c) => !knownWaiting.has(c.conversation_id));
    if (fresh.length) app.ui.announcer.textContent = `${app.t("queue_waiting", { n: waiting.length })}: ${fresh[0].preview || ""}`;
  }
  knownWaiting = new Set(waiting.map((c) => c.conversation_id));
  adoptMine();
  renderLink();
  renderQueue(app, app.ui.queue);
  // Customer names for conversations we have not seen yet.
  if (app.queue.items.some((c) => !app.convCache.has(c.conversation_id))) {
    clearTimeout(app.namesTimer);
    app.namesTimer = setTimeout(loadQueueRest, 200);
  }
}

function onError(f, view) {
  const { t } = app;
  if (f.client_msg_id && view) {
    const p = view.pending.get(f.client_msg_id);
    if (p) clearTimeout(p.timer);
    view.failPending(f.client_msg_id, { message: f.message, code: f.code });
  } else if (view) {
    view.notify(`${f.message} (${f.code})`);
  } else {
    notify(`${f.message || t("link_closed")} (${f.code})`, { key: `ws-${f.code}` });
  }
}

document.addEventListener("visibilitychange", () => {
  const view = app.views.get(app.active);
  if (!document.hidden && view?.unread) {
    view.unread = 0;
    renderTabs();
    renderQueue(app, app.ui.queue);
  }
});

// ---- start -----------------------------------------------------------------------

const session = loadSession();
if (session) startDashboard(session);
else showLogin();
