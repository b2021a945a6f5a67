// One open conversation: header with the customer and the actions, the live
// transcript, the composer, and its assist panel. The dashboard keeps one
// view per open tab; only the active one is shown.

import { h, replace } from "../common/dom.js";
import { formatTime } from "../common/i18n.js";
import { AssistPanel } from "./assist.js";
import { CannedPicker } from "./canned.js";
import { customerLabel, errorText, showNotice, statusLabel } from "./ui.js";

const TYPING_SHOWN_MS = 8000; // the server never expires `on: true`

export class ConversationView {
  constructor(app, id) {
    this.app = app;
    this.id = id;
    this.conv = app.convCache.get(id) || null;
    this.earlier = null;
    this.messages = new Map(); // seq → message
    this.pending = new Map(); // client_msg_id → {text, state, error}
    this.streams = new Map(); // reply_to → streamed bot text (a preview)
    this.unread = 0;
    this.queuePosition = null;
    this.loadState = "loading";
    this.loadError = null;
    this.customerTyping = false;
    this.panel = null; // "transfer" | "close" | null
    this.busy = false;
    this.assist = new AssistPanel(this);
    this.root = h("div", {
      class: "view",
      id: `panel-${id}`,
      role: "tabpanel",
      "aria-labelledby": `tab-${id}`,
      "data-aicc": "conversation",
      "data-conversation-id": id,
      hidden: true,
    });
    this.build();
  }

  get lastSeq() {
    let max = 0;
    for (const seq of this.messages.keys()) if (seq > max) max = seq;
    return max;
  }

  get status() {
    return this.conv?.status;
  }

  get mine() {
    return this.conv?.status === "assigned" && this.conv.agent_id === this.app.me.id;
  }

  /** Only the assigned agent may write (admins too only when assigned). */
  canReply() {
    return this.mine;
  }

  label() {
    return customerLabel(this.app.t, this.conv, this.id);
  }

  // ---- building -------------------------------------------------------

  /** (Re)builds the whole view from its state; also after a language switch. */
  build() {
    const { t } = this.app;
    const keepText = this.composer?.value || "";
    this.header = h("header", { class: "conv-header" });
    this.notices = h("div", { class: "notices", role: "alert", "aria-live": "assertive", "data-aicc": "conv-notices" });
    this.log = h("ol", { class: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions", "aria-label": t("transcript") });
    this.streamBox = h("div", { class: "stream", "data-aicc": "bot-stream" });
    this.pendingBox = h("ol", { class: "log pending-log", "aria-live": "polite" });
    this.scroller = h(
      "div",
      { class: "transcript", "data-aicc": "transcript", tabindex: "0", "aria-label": t("transcript") },
      this.log,
      this.streamBox,
      this.pendingBox,
    );
    this.typingEl = h("p", { class: "typing muted", "aria-live": "polite", "data-aicc": "typing" });
    this.composer = h("textarea", {
      id: `composer-${this.id}`,
      rows: 3,
      "data-aicc": "composer",
      placeholder: t("composer_placeholder"),
    });
    this.composer.value = keepText;
    this.sendBtn = h("button", { type: "submit", class: "primary", "data-aicc": "send" }, t("send"));
    this.hint = h("span", { class: "hint muted", "data-aicc": "composer-hint" });
    this.picker = new CannedPicker(this.app, {
      onPick: (text) => this.insertIntoComposer(text),
      onClose: () => this.composer.focus(),
    });
    const cannedBtn = h(
      "button",
      {
        type: "button",
        "data-aicc": "canned",
        "aria-haspopup": "dialog",
        onclick: () => (this.picker.isOpen ? this.picker.close() : this.picker.open()),
      },
      t("canned"),
    );
    const form = h(
      "form",
      { class: "composer", "data-aicc": "composer-form", onsubmit: (e) => this.#submit(e) },
      this.picker.root,
      h("label", { for: this.composer.id, class: "sr-only" }, t("composer")),
      this.composer,
      h("div", { class: "row" }, cannedBtn, this.hint, this.sendBtn),
    );
    this.#wireComposer();
    replace(
      this.root,
      h("section", { class: "conv-main", "aria-label": this.label() }, this.header, this.notices, this.scroller, this.typingEl, form),
      this.assist.root,
    );
    this.renderHeader();
    this.renderMessages();
    this.renderTyping();
    this.#composerState();
    this.assist.render();
  }

  #wireComposer() {
    const ta = this.composer;
    ta.addEventListener("keydown", (e) => {
      // Korean IME: the Enter that ends a composition must not send.
      if (e.key !== "Enter" || e.shiftKey || e.isComposing || e.keyCode === 229) return;
      e.preventDefault();
      this.#submit(e);
    });
    ta.addEventListener("input", () => this.app.typing(this, ta.value.trim() !== ""));
    ta.addEventListener("blur", () => this.app.typing(this, false));
  }

  #submit(e) {
    e.preventDefault();
    const text = this.composer.value.trim();
    if (!text || !this.canReply()) return;
    this.send(text);
    this.composer.value = "";
    this.app.typing(this, false);
    this.composer.focus();
  }

  send(text) {
    this.app.sendMessage(this, text);
  }

  insertIntoComposer(text, { replace: whole = false } = {}) {
    const ta = this.composer;
    if (whole || !ta.value.trim()) {
      ta.value = text;
    } else {
      const start = ta.selectionStart ?? ta.value.length;
      const end = ta.selectionEnd ?? start;
      const before = ta.value.slice(0, start);
      const sep = before && !/\s$/.test(before) ? " " : "";
      ta.setRangeText(sep + text, start, end, "end");
    }
    ta.focus();
    if (whole || ta.value === text) ta.setSelectionRange(ta.value.length, ta.value.length);
  }

  notify(text, opts) {
    showNotice(this.notices, this.app.t, text, opts);
  }

  // ---- header and actions ----------------------------------------------

  renderHeader() {
    const { t, me } = this.app;
    const c = this.conv;
    const status = c?.status;
    let who = null;
    if (status === "assigned" || (status === "closed" && c.agent_id)) {
      who = c.agent_id === me.id ? t("assigned_to_you") : t("assigned_to", { name: this.app.agentName(c.agent_id) });
    } else if (status === "queued" && this.queuePosition) {
      who = t("queue_position", { n: this.queuePosition });
    }
    const admin = me.role === "admin";
    const ownsOrAdmin = this.mine || admin;
    const btn = (key, onclick, cls = "") =>
      h("button", { type: "button", class: cls, "data-aicc": key, disabled: this.busy, onclick }, t(key === "transfer" ? "transfer" : key));
    const actions = [];
    if (status === "queued") actions.push(btn("claim", () => this.app.claim(this.id), "primary"));
    if (status === "queued" || (status === "assigned" && ownsOrAdmin)) actions.push(btn("transfer", () => this.#toggle("transfer")));
    if (status === "assigned" && ownsOrAdmin) actions.push(btn("release", () => this.#release()));
    if (status && status !== "closed" && (status !== "assigned" || ownsOrAdmin)) actions.push(btn("close", () => this.#toggle("close"), "danger"));

    replace(
      this.header,
      h(
        "div",
        { class: "conv-title" },
        h("h2", {}, this.label()),
        status ? h("span", { class: `badge status ${status}`, "data-aicc": "conv-status", "data-status": status }, statusLabel(t, status)) : null,
        who ? h("span", { class: "muted", "data-aicc": "conv-agent" }, who) : null,
      ),
      h("div", { class: "actions", role: "group", "aria-label": t("actions") }, actions),
      this.panel === "transfer" && actions.length ? this.#transferForm() : null,
      this.panel === "close" ? this.#closeConfirm() : null,
      this.#customerInfo(),
    );
  }

  #toggle(panel) {
    this.panel = this.panel === panel ? null : panel;
    this.renderHeader();
    this.header.querySelector(this.panel === "transfer" ? '[data-aicc="transfer-team"]' : '[data-aicc="confirm"]')?.focus();
  }

  #transferForm() {
    const { t } = this.app;
    const teamId = `team-${this.id}`;
    const listId = `teams-${this.id}`;
    const agentId = `agent-${this.id}`;
    const team = h("input", { id: teamId, list: listId, "data-aicc": "transfer-team", autocomplete: "off", value: this.transferTeam || "" });
    team.addEventListener("input", () => (this.transferTeam = team.value));
    const agents = this.app.agents.filter((a) => a.id !== this.conv?.agent_id);
    const agentSelect = agents.length
      ? h(
          "select",
          { id: agentId, "data-aicc": "transfer-agent" },
          h("option", { value: "" }, t("transfer_agent_none")),
          agents.map((a) => h("option", { value: a.id }, a.teams?.length ? `${a.name} (${a.teams.join(", ")})` : a.name)),
        )
      : null;
    return h(
      "form",
      {
        class: "transfer-form panel",
        "data-aicc": "transfer-form",
        "aria-label": t("transfer_title"),
        onsubmit: (e) => {
          e.preventDefault();
          const agent = agentSelect?.value;
          if (agent) this.#transfer({ agent_id: agent });
          else if (team.value.trim()) this.#transfer({ team: team.value.trim() });
          else this.notify(t("transfer_need"));
        },
        onkeydown: (e) => e.key === "Escape" && this.#toggle("transfer"),
      },
      h("div", {}, h("label", { for: teamId }, t("transfer_team")), team,
        h("datalist", { id: listId }, [...this.app.teams].sort().map((x) => h("option", { value: x })))),
      agentSelect ? h("div", {}, h("label", { for: agentId }, t("transfer_agent")), agentSelect) : null,
      h("div", { class: "row" },
        h("button", { type: "submit", class: "primary", "data-aicc": "transfer-submit" }, t("transfer_go")),
        h("button", { type: "button", onclick: () => this.#toggle("transfer") }, t("cancel"))),
    );
  }

  #closeConfirm() {
    const { t } = this.app;
    return h(
      "div",
      { class: "confirm panel", role: "group", "aria-label": t("close_confirm"), onkeydown: (e) => e.key === "Escape" && this.#toggle("close") },
      h("span", {}, t("close_confirm")),
      h("button", { type: "button", class: "danger", "data-aicc": "confirm", onclick: () => this.#close() }, t("confirm")),
      h("button", { type: "button", "data-aicc": "cancel", onclick: () => this.#toggle("close") }, t("cancel")),
    );
  }

  #customerInfo() {
    const { t, locale } = this.app;
    const c = this.conv;
    if (!c) return null;
    const cu = c.customer || {};
    const row = (k, v) => (v ? [h("dt", {}, k), h("dd", {}, v)] : []);
    const earlier = this.earlier;
    return h(
      "details",
      { class: "customer-info", "data-aicc": "customer-info" },
      h("summary", {}, t("customer_info"), cu.verified ? h("span", { class: "tag ok" }, t("verified")) : null),
      h(
        "dl",
        {},
        row(t("customer"), cu.name),
        row(t("email"), cu.email),
        row("ID", cu.user_id ? `${cu.user_id} (${cu.verified ? t("verified") : t("not_verified")})` : null),
        row(t("locale"), c.locale),
        row(t("started"), c.created_at && `${new Date(c.created_at).toLocaleDateString(locale === "ko" ? "ko-KR" : "en-GB")} ${formatTime(c.created_at, locale)}`),
        row(t("team_label"), c.team),
      ),
      earlier
        ? h(
            "div",
            { class: "earlier", "data-aicc": "earlier" },
            h("h3", {}, t("earlier", { n: earlier.length })),
            earlier.length
              ? h("ul", {}, earlier.map((e) =>
                  h("li", {}, h("button", {
                    type: "button", class: "link", "data-aicc": "earlier-item", "data-conversation-id": e.id,
                    onclick: () => this.app.openConversation(e.id, { activate: true }),
                  }, `${new Date(e.created_at).toLocaleDateString(locale === "ko" ? "ko-KR" : "en-GB")} · ${statusLabel(t, e.status)}`))))
              : h("p", { class: "muted" }, t("earlier_none")),
          )
        : null,
    );
  }

  /** Runs one REST action, showing its error (409s included) clearly. */
  async #act(action, call, okText) {
    const { t } = this.app;
    this.busy = true;
    this.renderHeader();
    try {
      const r = await call();
      this.panel = null;
      if (r?.conversation) this.updateConversation(r.conversation);
      if (okText) this.notify(okText(r?.conversation), { kind: "info" });
    } catch (e) {
      if (e.status === 401) return;
      this.notify(`${t("action_failed", { action: t(action), message: errorText(e) })}${e.code ? ` (${e.code})` : ""}`, { details: e.details });
      this.refresh(); // the state we acted on was stale: show the real one
    } finally {
      this.busy = false;
      this.renderHeader();
    }
  }

  #release() {
    return this.#act("release", () => this.app.api.post(`/v1/conversations/${this.id}/release`), () => this.app.t("released"));
  }

  #close() {
    return this.#act("close", () => this.app.api.post(`/v1/conversations/${this.id}/close`), () => this.app.t("closed_ok"));
  }

  #transfer(body) {
    const { t } = this.app;
    return this.#act("transfer", () => this.app.api.post(`/v1/conversations/${this.id}/transfer`, body), () => {
      this.transferTeam = "";
      return body.team ? t("transferred_team", { team: body.team }) : t("transferred_agent", { name: this.app.agentName(body.agent_id) });
    });
  }

  // ---- loading and live events -----------------------------------------

  async load() {
    this.loadState = "loading";
    this.renderMessages();
    try {
      await this.refresh(true);
      if (this.destroyed) return;
      let after = 0;
      for (;;) {
        const page = await this.app.api.get(`/v1/conversations/${this.id}/messages`, { after_seq: after, limit: 500 });
        if (this.destroyed) return;
        for (const m of page.messages) this.addMessage(m, { render: false });
        if (!page.next_after_seq) break;
        after = page.next_after_seq;
      }
      this.loadState = "ok";
      this.renderMessages();
      this.scrollToEnd();
      // Live from here: the server replays anything after lastSeq, then streams.
      this.app.socket.follow(this.id, this.lastSeq);
      this.assist.load();
    } catch (e) {
      if (e.status === 401 || this.destroyed) return;
      this.loadState = "error";
      this.loadError = e;
      this.renderMessages();
    }
  }

  /** GET the conversation (customer, status, earlier ones). */
  async refresh(strict = false) {
    try {
      const r = await this.app.api.get(`/v1/conversations/${this.id}`);
      if (this.destroyed) return;
      this.earlier = r.earlier || null;
      this.updateConversation(r.conversation);
    } catch (e) {
      if (strict) throw e;
    }
  }

  updateConversation(conv) {
    this.conv = { ...(this.conv || {}), ...conv };
    if (!("agent_id" in conv)) this.conv.agent_id = null; // left out when none
    if (!("team" in conv)) this.conv.team = null;
    this.app.convCache.set(this.id, this.conv);
    this.#stateChanged();
  }

  /** A `status` frame. */
  onStatus(frame) {
    this.conv = { ...(this.conv || { id: this.id }), status: frame.status, agent_id: frame.agent?.id ?? null };
    this.queuePosition = frame.queue_position ?? null;
    this.#stateChanged();
  }

  #stateChanged() {
    if (this.status !== "queued") this.queuePosition = null;
    if (!this.canReply() && this.panel === "transfer" && this.status !== "queued") this.panel = null;
    this.renderHeader();
    this.#composerState();
    this.assist.refreshButtons();
    this.app.onViewChanged(this);
  }

  #composerState() {
    const { t } = this.app;
    const s = this.status;
    const hint = this.canReply()
      ? ""
      : s === "closed" ? t("composer_closed")
      : s === "assigned" ? t("composer_other")
      : s === "bot" ? t("composer_bot")
      : s === "queued" ? t("composer_readonly") : "";
    this.hint.textContent = hint;
    this.sendBtn.disabled = !this.canReply();
    this.composer.disabled = s === "closed";
  }

  /** A stored message (REST page, replay or live). Returns true when new. */
  addMessage(m, { render = true } = {}) {
    if (this.messages.has(m.seq)) return false;
    this.messages.set(m.seq, m);
    if (m.client_msg_id && this.pending.delete(m.client_msg_id) && render) this.renderPending();
    if (m.sender === "bot") this.streams.clear();
    if (m.sender === "customer") this.setCustomerTyping(false);
    if (!render) return true;
    const near = this.#nearEnd();
    const el = this.#messageEl(m);
    const after = [...this.log.children].find((li) => Number(li.dataset.seq) > m.seq);
    this.log.insertBefore(el, after || null);
    this.renderStream();
    if (near || (m.sender === "agent" && m.sender_id === this.app.me.id)) this.scrollToEnd();
    return true;
  }

  onToken(frame) {
    this.streams.set(frame.reply_to, (this.streams.get(frame.reply_to) || "") + frame.text);
    const near = this.#nearEnd();
    this.renderStream();
    if (near) this.scrollToEnd();
  }

  onTyping(frame) {
    if (frame.sender === "customer") this.setCustomerTyping(frame.on);
  }

  setCustomerTyping(on) {
    clearTimeout(this.typingTimer);
    this.customerTyping = on;
    if (on) this.typingTimer = setTimeout(() => this.setCustomerTyping(false), TYPING_SHOWN_MS);
    this.renderTyping();
  }

  // ---- sending ------------------------------------------------------------

  addPending(clientMsgId, text) {
    this.pending.set(clientMsgId, { text, state: "sending" });
    this.renderPending();
    this.scrollToEnd();
  }

  onAck(frame) {
    const p = this.pending.get(frame.client_msg_id);
    if (!p) return;
    p.acked = frame.seq;
    if (this.messages.has(frame.seq)) {
      this.pending.delete(frame.client_msg_id);
      this.renderPending();
    }
  }

  failPending(clientMsgId, error) {
    const p = this.pending.get(clientMsgId);
    if (!p) return;
    p.state = "failed";
    p.error = error;
    this.renderPending();
    this.notify(this.app.t("send_failed", { message: `${errorText(error)}${error.code ? ` (${error.code})` : ""}` }));
    // Our idea of the state was stale (released, transferred, closed): fetch the real one.
    if (["not_assigned", "conversation_closed", "not_found"].includes(error.code)) this.refresh();
  }

  // ---- rendering the transcript -----------------------------------------

  renderMessages() {
    const { t } = this.app;
    if (this.loadState === "error") {
      replace(
        this.log,
        h("li", { class: "notice error" }, t("load_failed", { message: errorText(this.loadError) }), " ",
          h("button", { type: "button", onclick: () => this.load() }, t("retry"))),
      );
      return;
    }
    if (this.loadState === "loading" && !this.messages.size) {
      replace(this.log, h("li", { class: "muted" }, t("loading")));
      return;
    }
    const sorted = [...this.messages.values()].sort((a, b) => a.seq - b.seq);
    replace(this.log, sorted.map((m) => this.#messageEl(m)));
    this.renderPending();
    this.renderStream();
  }

  #messageEl(m) {
    const { t, locale, me } = this.app;
    let who;
    if (m.sender === "customer") who = this.label();
    else if (m.sender === "bot") who = t("bot");
    else if (m.sender === "system") who = t("system");
    else who = m.sender_id === me.id ? `${t("you")} (${me.name})` : this.app.agentName(m.sender_id);
    const citations = m.citations?.length
      ? h("div", { class: "citations", "data-aicc": "citations" }, h("span", { class: "muted" }, t("sources"), ": "),
          h("ul", {}, m.citations.map((c) => h("li", { title: c.article_id, "data-article-id": c.article_id }, c.title || c.article_id))))
      : null;
    const quick = m.quick_replies?.length
      ? h("div", { class: "quick" }, h("span", { class: "muted" }, t("suggestions"), ": "),
          m.quick_replies.map((q) => h("span", { class: "chip" }, q)))
      : null;
    return h(
      "li",
      {
        class: `msg ${m.sender}${m.sender === "agent" && m.sender_id === me.id ? " own" : ""}`,
        "data-aicc": "message",
        "data-sender": m.sender,
        "data-seq": String(m.seq),
        "data-message-id": m.id,
      },
      h("div", { class: "msg-head" },
        h("span", { class: "sender" }, who),
        m.intent ? h("span", { class: "tag intent" }, m.intent) : null,
        h("time", { datetime: m.created_at }, formatTime(m.created_at, locale))),
      h("div", { class: "text" }, m.text),
      citations,
      quick,
    );
  }

  renderPending() {
    const { t, me } = this.app;
    replace(
      this.pendingBox,
      [...this.pending.entries()].map(([id, p]) =>
        h(
          "li",
          { class: `msg agent own pending ${p.state}`, "data-aicc": "message-pending", "data-client-msg-id": id },
          h("div", { class: "msg-head" }, h("span", { class: "sender" }, `${t("you")} (${me.name})`),
            h("span", { class: p.state === "failed" ? "error" : "muted" }, p.state === "failed" ? t("send_failed", { message: errorText(p.error) }) : t("sending"))),
          h("div", { class: "text" }, p.text),
          p.state === "failed"
            ? h("div", { class: "row" },
                h("button", { type: "button", onclick: () => this.app.retrySend(this, id) }, t("retry")),
                h("button", { type: "button", class: "link", onclick: () => { this.pending.delete(id); this.renderPending(); } }, t("dismiss")))
            : null,
        ),
      ),
    );
  }

  renderStream() {
    const text = [...this.streams.values()].pop();
    replace(
      this.streamBox,
      text
        ? h("div", { class: "msg bot streaming", "aria-hidden": "true" },
            h("div", { class: "msg-head" }, h("span", { class: "sender" }, this.app.t("bot_typing"))),
            h("div", { class: "text" }, text))
        : null,
    );
  }

  renderTyping() {
    this.typingEl.textContent = this.customerTyping ? this.app.t("customer_typing") : "";
  }

  #nearEnd() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  setActive(on) {
    this.root.hidden = !on;
    if (on) {
      this.unread = 0;
      requestAnimationFrame(() => this.scrollToEnd());
    }
  }

  destroy() {
    this.destroyed = true; // loads still under way drop their answers
    clearTimeout(this.typingTimer);
    clearTimeout(this.assist.refreshTimer);
    this.app.typing(this, false);
    this.root.remove();
  }
}
