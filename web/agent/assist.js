// The assist panel of one conversation: detected intent, knowledge hits to
// insert, the drafted reply (editable, sent in one click) and the running
// summary. Fed by GET …/assist and live `assist` frames.

import { h, replace } from "../common/dom.js";
import { errorText } from "./ui.js";

const REFRESH_AFTER_MS = 800;

export class AssistPanel {
  constructor(view) {
    this.view = view;
    this.app = view.app;
    this.data = null; // {intent, kb_hits, suggested_reply, summary}
    this.error = null;
    this.dirty = false; // the agent edited the draft: live updates must not clobber it
    this.sentDraft = null; // the suggestion already sent, not offered again
    this.newer = null; // a newer suggestion held back while the draft is dirty
    this.frames = 0; // live frames seen, to drop a GET answer overtaken by one
    this.inflight = 0;
    this.refreshTimer = null;
    this.root = h("aside", { class: "assist-pane", "data-aicc": "assist", "data-state": "loading", "aria-label": view.app.t("assist") });
  }

  async load() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    const frames = this.frames;
    this.inflight += 1;
    this.#state();
    try {
      const data = await this.app.api.get(`/v1/conversations/${this.view.id}/assist`);
      if (this.view.destroyed) return;
      // A frame that came meanwhile scheduled another GET: let that one win.
      if (frames === this.frames) this.update(data);
    } catch (e) {
      if (e.status === 401 || this.view.destroyed) return;
      this.error = e;
      this.render();
    } finally {
      this.inflight -= 1;
      this.#state();
    }
  }

  /**
   * A live `assist` frame. Frames are computed in the background and can
   * arrive out of order (one from before the claim after a newer one), so it
   * is shown at once and then checked with a fresh GET once frames pause.
   */
  onFrame(frame) {
    this.frames += 1;
    this.update(frame);
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.load(), REFRESH_AFTER_MS);
    this.#state();
  }

  /** `data-state`: "loading" while a GET is due or under way, else "ready". */
  #state() {
    this.root.dataset.state = this.inflight || this.refreshTimer ? "loading" : "ready";
  }

  /** A GET answer or an `assist` frame (same body). */
  update(data) {
    this.error = null;
    const suggestion = data.suggested_reply || "";
    const box = this.root.querySelector('[data-aicc="assist-draft"]');
    const shown = box ? box.value : "";
    if (this.dirty) this.newer = suggestion && suggestion !== shown && suggestion !== this.sentDraft ? suggestion : null;
    this.data = data;
    this.render();
    this.app.onAssistChanged(this.view);
  }

  /** The text the draft box should hold now. */
  draftText(keep) {
    if (keep !== undefined) return keep;
    const s = this.data?.suggested_reply || "";
    return s === this.sentDraft ? "" : s;
  }

  render() {
    const { t } = this.app;
    const old = this.root.querySelector('[data-aicc="assist-draft"]');
    const keep = this.dirty && old ? old.value : undefined;
    const title = h("h2", { class: "pane-title" }, t("assist"));
    if (this.error) {
      replace(
        this.root,
        title,
        h("p", { class: "notice error", role: "alert" }, t("assist_failed", { message: errorText(this.error) })),
        h("button", { type: "button", onclick: () => this.load() }, t("retry")),
      );
      return;
    }
    if (!this.data) {
      replace(this.root, title, h("p", { class: "muted" }, t("loading")));
      return;
    }
    const d = this.data;
    replace(this.root, title, this.#intent(d), this.#draft(d, keep), this.#hits(d), this.#summary(d.summary));
  }

  #intent(d) {
    const { t } = this.app;
    const confidence = d.intent_confidence ?? d.confidence;
    return h(
      "section",
      { class: "assist-block", "aria-label": t("assist_intent") },
      h("h3", {}, t("assist_intent")),
      d.intent
        ? h(
            "p",
            { "data-aicc": "assist-intent", "data-intent": d.intent },
            h("span", { class: "tag intent" }, d.intent),
            typeof confidence === "number" ? h("span", { class: "muted" }, " ", t("confidence", { p: Math.round(confidence * 100) })) : null,
          )
        : h("p", { class: "muted", "data-aicc": "assist-intent" }, t("assist_no_intent")),
    );
  }

  #hits(d) {
    const { t } = this.app;
    const hits = d.kb_hits || [];
    return h(
      "section",
      { class: "assist-block", "aria-label": t("assist_hits") },
      h("h3", {}, t("assist_hits")),
      hits.length
        ? h(
            "ul",
            { class: "hits" },
            hits.map((hit) =>
              h(
                "li",
                { class: "hit", "data-aicc": "assist-hit", "data-article-id": hit.article_id },
                h("details", {},
                  h("summary", {}, h("strong", {}, hit.question), " ", h("span", { class: "muted" }, t("score", { s: Number(hit.score).toFixed(2) }))),
                  h("p", { class: "answer" }, hit.answer),
                  h("p", { class: "muted small" }, [hit.article_id, hit.language].filter(Boolean).join(" · ")),
                ),
                h(
                  "button",
                  {
                    type: "button",
                    "data-aicc": "assist-insert",
                    "aria-label": t("insert_label", { q: hit.question }),
                    onclick: () => this.view.insertIntoComposer(hit.answer),
                  },
                  t("insert"),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, t("assist_no_hits")),
    );
  }

  #draft(d, keep) {
    const { t } = this.app;
    const text = this.draftText(keep);
    const id = `draft-${this.view.id}`;
    const box = h("textarea", { id, rows: 5, "data-aicc": "assist-draft", class: "draft" });
    box.value = text;
    box.addEventListener("input", () => {
      this.dirty = true;
      sendBtn.disabled = !box.value.trim() || !this.view.canReply();
    });
    const sendBtn = h(
      "button",
      {
        type: "button",
        class: "primary",
        "data-aicc": "assist-send-draft",
        disabled: !text.trim() || !this.view.canReply(),
        onclick: () => this.#sendDraft(box),
      },
      t("send_draft"),
    );
    const editBtn = h(
      "button",
      {
        type: "button",
        "data-aicc": "assist-edit",
        disabled: !text.trim(),
        onclick: () => this.view.insertIntoComposer(box.value, { replace: true }),
      },
      t("edit_draft"),
    );
    const newer = this.newer
      ? h("p", { class: "notice" }, t("assist_new_draft"), " ",
          h("button", { type: "button", class: "link", onclick: () => this.#useNewer() }, t("use_new_draft")))
      : null;
    return h(
      "section",
      { class: "assist-block draft-block", "aria-label": t("assist_draft") },
      h("label", { for: id }, h("h3", {}, t("assist_draft"))),
      d.suggested_reply || keep ? null : h("p", { class: "muted", "data-aicc": "assist-no-draft" }, t("assist_no_draft")),
      d.suggested_reply && d.suggested_reply === this.sentDraft && !keep ? h("p", { class: "muted", "data-aicc": "assist-draft-sent" }, t("draft_sent")) : null,
      box,
      newer,
      h("div", { class: "row" }, sendBtn, editBtn),
    );
  }

  #useNewer() {
    this.dirty = false;
    this.newer = null;
    this.render();
  }

  #sendDraft(box) {
    const text = box.value.trim();
    if (!text) return;
    this.view.send(text);
    this.sentDraft = this.data?.suggested_reply || text;
    this.dirty = false;
    this.newer = null;
    this.render();
  }

  #summary(s) {
    const { t } = this.app;
    const list = (items) =>
      items && items.length ? h("ul", {}, items.map((x) => h("li", {}, String(x)))) : h("p", { class: "muted" }, t("none"));
    // Steps are said in the dashboard's language; `tried`/`next_step` are
    // the server's English (summaries stored before steps existed).
    const reason = (d) => (t(`reason_${d}`) === `reason_${d}` ? d : t(`reason_${d}`)); // a known handoff code, or free text
    const step = (x) => t(`step_${x.kind}`, { q: x.quote || "", d: x.kind === "bot_answered" ? x.detail || "" : reason(x.detail || "") });
    let body;
    if (!s) body = h("p", { class: "muted" }, t("none"));
    else if (typeof s === "string") body = h("p", {}, s);
    else
      body = h(
        "dl",
        {},
        h("dt", {}, t("summary_problem")), h("dd", { "data-aicc": "summary-problem" }, s.problem || t("none")),
        h("dt", {}, t("summary_tried")), h("dd", {}, list(s.steps ? s.steps.map(step) : s.tried)),
        h("dt", {}, t("summary_open")), h("dd", {}, list(s.open_questions)),
        h("dt", {}, t("summary_next")), h("dd", { "data-aicc": "summary-next" }, s.next ? step(s.next) : s.next_step || t("none")),
      );
    return h(
      "section",
      { class: "assist-block", "data-aicc": "assist-summary", "aria-label": t("assist_summary") },
      h("h3", {}, t("assist_summary")),
      body,
    );
  }

  /** The reply state changed (claimed, released…): refresh the send button. */
  refreshButtons() {
    const box = this.root.querySelector('[data-aicc="assist-draft"]');
    const btn = this.root.querySelector('[data-aicc="assist-send-draft"]');
    if (box && btn) btn.disabled = !box.value.trim() || !this.view.canReply();
  }
}
