// Small building blocks shared by the console's sections: labelled fields
// with an error slot, error notices (with per-line / per-field details),
// a confirm dialog, and date formatting.

import { h } from "../common/dom.js";

let seq = 0;
export function uid(prefix = "f") {
  seq += 1;
  return `${prefix}-${seq}`;
}

/**
 * A labelled control with a hint and an error slot wired to aria-describedby.
 * Returns the wrapper; `wrapper.setError(text)` shows or clears the error.
 */
export function field(labelText, control, { hint, name, wide } = {}) {
  const id = control.id || uid("in");
  control.id = id;
  const errId = `${id}-err`;
  const hintEl = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  const errEl = h("p", { class: "field-error", id: errId, hidden: true, "data-aicc": "field-error" });
  control.setAttribute("aria-describedby", [hintEl && hintEl.id, errId].filter(Boolean).join(" "));
  const wrap = h("div", { class: wide ? "field wide" : "field", "data-field": name }, h("label", { for: id }, labelText), control, hintEl, errEl);
  wrap.setError = (text) => {
    errEl.textContent = text || "";
    errEl.hidden = !text;
    if (text) control.setAttribute("aria-invalid", "true");
    else control.removeAttribute("aria-invalid");
  };
  return wrap;
}

/** An error notice for a failed call: the message, then its details. */
export function errorBox(t, err, { tag = "api-error" } = {}) {
  const box = h("div", { class: "notice error", role: "alert", "data-aicc": tag });
  box.append(h("p", {}, err?.message || String(err)));
  const details = Array.isArray(err?.details) ? err.details : [];
  if (details.some((d) => d && d.line !== undefined)) box.append(lineErrors(t, details));
  else if (details.length) {
    box.append(h("ul", {}, details.map((d) => h("li", {}, d.field ? `${d.field}: ${d.message}` : d.message || JSON.stringify(d)))));
  }
  return box;
}

/** `[{line, message}]` as a table, one row per problem (data-line for tests). */
export function lineErrors(t, details, rowTag = "error-row") {
  return tableWrap(
    h("table", { class: "compact" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("common.line")), h("th", { scope: "col" }, t("common.problem")))),
      h("tbody", {}, details.map((d) =>
        h("tr", { "data-aicc": rowTag, "data-line": d.line }, h("td", { class: "num" }, String(d.line)), h("td", {}, d.message)))),
    ),
  );
}

export function notice(text, { kind = "ok", tag } = {}) {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status", "data-aicc": tag }, text);
}

/** A scrollable frame so wide tables stay usable at 360 px. */
export function tableWrap(table) {
  return h("div", { class: "table-wrap" }, table);
}

/** A modal confirm (keyboard: Enter/Esc) that resolves to true or false. */
export function confirmDialog(t, message, { okLabel, danger = false } = {}) {
  return new Promise((resolve) => {
    const ok = h("button", { type: "submit", value: "ok", class: danger ? "danger" : "primary", "data-aicc": "confirm-ok" }, okLabel || t("common.ok"));
    const cancel = h("button", { type: "submit", value: "cancel", "data-aicc": "confirm-cancel" }, t("common.cancel"));
    const msgId = uid("dlg");
    const dlg = h("dialog", { class: "confirm", "aria-labelledby": msgId, "data-aicc": "confirm" },
      h("form", { method: "dialog" }, h("p", { id: msgId }, message), h("div", { class: "actions" }, cancel, ok)));
    dlg.addEventListener("close", () => {
      resolve(dlg.returnValue === "ok");
      dlg.remove();
    });
    document.body.append(dlg);
    dlg.showModal();
    ok.focus();
  });
}

/** Runs `fn` with the button disabled (and marked busy) meanwhile. */
export async function busy(button, fn) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await fn();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

export function fmtDateTime(iso, locale) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString(locale === "ko" ? "ko-KR" : "en-GB", { dateStyle: "medium", timeStyle: "short" });
}

export function fmtDate(iso, locale) {
  if (!iso) return "—";
  return new Date(iso).toLocaleDateString(locale === "ko" ? "ko-KR" : "en-GB", { month: "short", day: "numeric" });
}

export function fmtPct(x) {
  return x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)}%`;
}

export function fmtNum(x, digits = 3) {
  return x === null || x === undefined ? "—" : Number(x).toFixed(digits);
}

/** A heading plus content in a panel. */
export function panel(title, ...children) {
  return h("section", { class: "panel" }, title ? h("h3", {}, title) : null, ...children);
}
