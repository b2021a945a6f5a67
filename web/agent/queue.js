// The live queue: waiting conversations, mine, and other agents'. Built from
// the socket's `queue` snapshots (or the REST lists before the first one).

import { h, replace } from "../common/dom.js";
import { formatDuration } from "../common/i18n.js";
import { customerLabel } from "./ui.js";

/** Splits the snapshot into the three groups the agent works with. */
export function groupQueue(items, meId) {
  const waiting = items.filter((c) => c.status === "queued");
  const mine = items.filter((c) => c.status === "assigned" && c.agent_id === meId);
  const others = items.filter((c) => c.status === "assigned" && c.agent_id !== meId);
  // Longest wait first.
  waiting.sort((a, b) => b.waiting_ms - a.waiting_ms);
  return { waiting, mine, others };
}

/** The item's waiting time now: what the server said plus time since. */
export function waitedMs(item) {
  return item.waiting_ms + (Date.now() - item.receivedAt);
}

/** Renders the queue into `el`, keeping keyboard focus where it was. */
export function renderQueue(app, el) {
  const { t } = app;
  const focus = document.activeElement;
  const focusKey = el.contains(focus) ? [focus.dataset.aicc, focus.closest("[data-conversation-id]")?.dataset.conversationId] : null;

  const { waiting, mine, others } = groupQueue(app.queue.items, app.me.id);
  const section = (key, heading, items, empty) =>
    h(
      "section",
      { class: `queue-group ${key}`, "data-aicc": `queue-${key}`, "aria-label": heading },
      h("h3", {}, heading),
      items.length
        ? h("ul", { class: "queue-list" }, items.map((item) => queueItem(app, item)))
        : h("p", { class: "muted empty", "data-aicc": `queue-${key}-empty` }, empty),
    );
  replace(
    el,
    section("waiting", t("queue_waiting", { n: waiting.length }), waiting, t("queue_empty")),
    section("mine", t("queue_mine", { n: mine.length }), mine, t("mine_empty")),
    section("others", t("queue_others", { n: others.length }), others, t("others_empty")),
  );

  if (focusKey) {
    const [aicc, id] = focusKey;
    const again = id && el.querySelector(`[data-conversation-id="${CSS.escape(id)}"] [data-aicc="${aicc}"]`);
    (again || el.querySelector("button"))?.focus();
  }
}

function queueItem(app, item) {
  const { t } = app;
  const id = item.conversation_id;
  const view = app.views.get(id);
  const conv = view?.conv || app.convCache.get(id);
  const intent = item.intent || view?.assist?.data?.intent;
  const unread = view?.unread || 0;
  const who =
    item.status === "assigned" && item.agent_id !== app.me.id ? app.agentName(item.agent_id) : null;
  return h(
    "li",
    {
      class: `queue-item ${item.status}${app.active === id ? " current" : ""}`,
      "data-aicc": "queue-item",
      "data-conversation-id": id,
      "data-status": item.status,
    },
    h(
      "button",
      { type: "button", class: "queue-open", "data-aicc": "queue-open", onclick: () => app.openConversation(id, { activate: true }) },
      h("span", { class: "who" }, customerLabel(t, conv, id),
        unread ? h("span", { class: "badge", "data-aicc": "queue-unread", "aria-label": t("unread", { n: unread }) }, String(unread)) : null),
      h("span", { class: "preview" }, item.preview || t("no_preview")),
    ),
    h(
      "div",
      { class: "meta" },
      waitSpan(app, item),
      item.team ? h("span", { class: "tag" }, t("team", { team: item.team })) : null,
      intent ? h("span", { class: "tag intent", "data-aicc": "queue-intent" }, t("intent", { intent })) : null,
      who ? h("span", { class: "tag" }, who) : null,
    ),
    item.status === "queued"
      ? h("button", { type: "button", class: "primary claim", "data-aicc": "claim", onclick: (ev) => app.claim(id, ev.currentTarget) }, t("claim"))
      : null,
  );
}

function waitSpan(app, item) {
  const span = h("span", { class: "wait", "data-aicc": "queue-wait" }, waitText(app, item));
  span._item = item; // for tickQueue
  return span;
}

function waitText(app, item) {
  const kind = item.status === "queued" ? "waiting_for" : "assigned_for";
  return app.t(kind, { d: formatDuration(waitedMs(item), app.locale) });
}

/** Called every second: only the waiting times change, nothing is rebuilt. */
export function tickQueue(app, el) {
  for (const span of el.querySelectorAll(".wait")) {
    if (span._item) span.textContent = waitText(app, span._item);
  }
}
