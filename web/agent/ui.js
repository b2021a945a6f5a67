// Small pieces shared by the dashboard's modules: notices and labels.

import { h } from "../common/dom.js";

/**
 * Shows a dismissible notice in `area` (an element with aria-live set).
 * Errors stay until dismissed; info notices fade after a few seconds.
 * `details` are the API's per-line details ({line?, field?, message}).
 */
export function showNotice(area, t, text, { kind = "error", details = [], key } = {}) {
  if (key) area.querySelector(`[data-key="${CSS.escape(key)}"]`)?.remove();
  const list = details.length
    ? h("ul", { class: "details" }, details.map((d) => h("li", {}, [d.line && `#${d.line}`, d.field, d.message].filter(Boolean).join(" "))))
    : null;
  const el = h(
    "div",
    { class: `notice ${kind === "error" ? "error" : "info"}`, "data-aicc": `notice-${kind}`, "data-key": key },
    h("span", {}, text),
    list,
    h("button", { type: "button", class: "link", onclick: () => el.remove(), "aria-label": t("dismiss") }, "×"),
  );
  area.append(el);
  if (kind !== "error") setTimeout(() => el.remove(), 6000);
  return el;
}

/** An ApiError (or anything thrown) as the words to show. */
export function errorText(e) {
  return e?.message || String(e);
}

export function statusLabel(t, status) {
  return t(`status_${status}`);
}

/** "Kim Minji" or "Customer 1a2b" when the customer gave no name. */
export function customerLabel(t, conv, id) {
  const name = conv?.customer?.name;
  return name || t("customer_n", { id: (id || conv?.id || "").slice(0, 4) });
}
