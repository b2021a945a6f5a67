// Tenant settings: a form drawn from the settings JSON the server returns
// (known fields get fitting controls, anything else a generic one), PUT back
// whole — a field left out would take its default — with each 422 detail
// shown next to the field it names.

import { h, replace } from "../common/dom.js";
import { formatDuration } from "../common/i18n.js";
import { field, errorBox, notice, busy } from "./ui.js";

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const ASSIGNMENT = ["manual", "round_robin", "least_busy"];
const RATIOS = new Set(["dialog.direct", "dialog.rag", "dialog.intent_min", "dialog.clarify_margin"]);
const SECONDS = new Set(["tokens.staff_secs", "tokens.customer_secs", "idle_timeout_secs"]);
const ORDER = ["dialog", "pii", "texts", "business_hours", "allowed_origins", "tokens", "idle_timeout_secs", "assignment"];
const TEXT_LANGS = ["ko", "en"];

export async function render(ctx) {
  const { t } = ctx;
  const loaded = await ctx.api.get("/v1/admin/settings");
  if (!ctx.current()) return;
  draw(ctx, loaded, null);
}

function draw(ctx, settings, banner) {
  const { t } = ctx;
  // path → {wrap (has setError), read()}; errors name these paths (or a parent of one).
  const controls = new Map();
  const label = (path) => {
    const k = `settings.f.${path}`;
    const s = t(k);
    return s === k ? path.split(".").pop() : s;
  };
  const hint = (path) => {
    const k = `settings.h.${path}`;
    const s = t(k);
    return s === k ? null : s;
  };
  const register = (path, wrap, read) => {
    controls.set(path, { wrap, read });
    return wrap;
  };

  function scalar(path, value) {
    let input;
    let read;
    if (typeof value === "boolean") {
      input = h("input", { type: "checkbox", checked: value, "data-aicc": `setting-${path}` });
      read = () => input.checked;
      const wrap = h("div", { class: "field check", "data-field": path }, h("label", {}, input, " ", label(path)), h("p", { class: "field-error", hidden: true }));
      wrap.setError = (msg) => {
        const p = wrap.querySelector(".field-error");
        p.textContent = msg || "";
        p.hidden = !msg;
      };
      return register(path, wrap, read);
    }
    if (typeof value === "number") {
      const ratio = RATIOS.has(path);
      input = h("input", { type: "number", step: ratio ? "0.01" : Number.isInteger(value) ? "1" : "any", min: ratio ? "0" : null, max: ratio ? "1" : null, value: String(value), inputMode: "decimal", "data-aicc": `setting-${path}` });
      read = () => (input.value.trim() === "" ? null : Number(input.value));
      const extra = hint(path);
      const wrap = field(label(path), input, { name: path, hint: extra || (SECONDS.has(path) ? " " : null) });
      if (SECONDS.has(path)) {
        // Seconds are hard to read: show the duration as it is typed.
        const hintEl = wrap.querySelector(".hint");
        const show = () => { hintEl.textContent = `${extra ? `${extra} · ` : ""}= ${formatDuration(Number(input.value) * 1000, ctx.locale)}`; };
        input.addEventListener("input", show);
        show();
      }
      return register(path, wrap, read);
    }
    if (path === "assignment") {
      const opts = ASSIGNMENT.includes(value) ? ASSIGNMENT : [...ASSIGNMENT, value];
      input = h("select", { "data-aicc": "setting-assignment" }, opts.map((o) => h("option", { value: o, selected: o === value }, label(`assignment.${o}`))));
    } else {
      input = h("input", { value: value ?? "", "data-aicc": `setting-${path}`, spellcheck: false });
    }
    // A null stays null when left empty (an optional value, not an empty string).
    read = () => (value === null && input.value === "" ? null : input.value);
    return register(path, field(label(path), input, { name: path, hint: hint(path) }), read);
  }

  function stringList(path, list) {
    const input = h("textarea", { rows: Math.max(2, list.length + 1), spellcheck: false, "data-aicc": `setting-${path}` }, list.join("\n"));
    return register(path, field(label(path), input, { name: path, hint: hint(path) || t("settings.onePerLine"), wide: true }),
      () => input.value.split("\n").map((s) => s.trim()).filter(Boolean));
  }

  function json(path, value) {
    const input = h("textarea", { rows: 4, spellcheck: false, class: "mono", "data-aicc": `setting-${path}` }, JSON.stringify(value, null, 2));
    const wrap = field(label(path), input, { name: path, hint: t("settings.jsonHint"), wide: true });
    return register(path, wrap, () => {
      try {
        return JSON.parse(input.value);
      } catch {
        throw Object.assign(new Error(t("settings.badJson")), { field: path });
      }
    });
  }

  function group(path, obj) {
    return h("fieldset", { class: "group", "data-field": path }, h("legend", {}, label(path)), hint(path) ? h("p", { class: "hint" }, hint(path)) : null,
      h("div", { class: "grid-form" }, Object.entries(obj).map(([k, v]) => any(`${path}.${k}`, v))));
  }

  function any(path, value) {
    if (path === "texts") return texts(value);
    if (path === "business_hours.days") return days(value);
    if (value === null || ["boolean", "number", "string"].includes(typeof value)) return scalar(path, value);
    if (Array.isArray(value) && value.every((v) => typeof v === "string")) return stringList(path, value);
    if (value && typeof value === "object" && !Array.isArray(value)) return group(path, value);
    return json(path, value);
  }

  function texts(map) {
    const rows = h("div", { class: "texts" });
    const addRow = (key, langs) => {
      const row = h("div", { class: "text-row", "data-aicc": "setting-text", "data-key": key },
        h("div", { class: "text-key" }, h("code", {}, key), h("button", { type: "button", class: "link danger", "aria-label": t("settings.removeText", { key }), onclick: () => { row.remove(); for (const l of langsOf(langs)) controls.delete(`texts.${key}.${l}`); } }, t("common.remove"))),
        h("div", { class: "grid-form" }, langsOf(langs).map((l) => {
          const input = h("textarea", { rows: 2, lang: l, "data-aicc": `setting-texts.${key}.${l}` }, langs[l] || "");
          return register(`texts.${key}.${l}`, field(`${t(`common.lang.${l}`)} (${l})`, input, { name: `texts.${key}.${l}` }), () => input.value);
        })));
      rows.append(row);
    };
    const langsOf = (langs) => [...new Set([...TEXT_LANGS, ...Object.keys(langs)])];
    for (const [key, langs] of Object.entries(map)) addRow(key, langs);
    const newKey = h("input", { pattern: "[a-z0-9_]+", spellcheck: false, "data-aicc": "setting-text-new-key", placeholder: "e.g. promo" });
    const addBtn = h("button", { type: "button", "data-aicc": "setting-text-add" }, t("settings.addText"));
    addBtn.addEventListener("click", () => {
      const key = newKey.value.trim();
      if (!key || controls.has(`texts.${key}.ko`) || controls.has(`texts.${key}.en`)) return;
      addRow(key, {});
      newKey.value = "";
    });
    const fs = h("fieldset", { class: "group", "data-field": "texts" }, h("legend", {}, label("texts")), h("p", { class: "hint" }, t("settings.textsHint")),
      rows, h("div", { class: "inline-form" }, field(t("settings.newTextKey"), newKey), h("div", { class: "actions" }, addBtn)));
    // Read all texts back as one map; blank ones are left out (the API refuses blanks).
    register("texts", { setError: () => {} }, () => {
      const out = {};
      for (const [path, c] of controls) {
        const m = /^texts\.([^.]+)\.([^.]+)$/.exec(path);
        if (!m) continue;
        const v = c.read();
        if (!v.trim()) continue;
        (out[m[1]] ||= {})[m[2]] = v;
      }
      return out;
    });
    return fs;
  }

  function days(map) {
    const list = h("div", { class: "days" }, DAYS.map((d) => {
      const [o, c] = map[d] || ["09:00", "18:00"];
      const open = h("input", { type: "checkbox", checked: Boolean(map[d]), "data-aicc": `setting-day-${d}` });
      const from = h("input", { value: o, pattern: "\\d{2}:\\d{2}", inputMode: "numeric", size: 5, "aria-label": t("settings.opens", { day: t(`settings.day.${d}`) }), "data-aicc": `setting-day-${d}-open` });
      const to = h("input", { value: c, pattern: "\\d{2}:\\d{2}", inputMode: "numeric", size: 5, "aria-label": t("settings.closes", { day: t(`settings.day.${d}`) }), "data-aicc": `setting-day-${d}-close` });
      const sync = () => { from.disabled = to.disabled = !open.checked; };
      open.addEventListener("change", sync);
      sync();
      const err = h("p", { class: "field-error", hidden: true });
      const row = h("div", { class: "day", "data-field": `business_hours.days.${d}` },
        h("label", { class: "day-name" }, open, " ", t(`settings.day.${d}`)), from, h("span", { "aria-hidden": "true" }, "–"), to, err);
      row.setError = (msg) => { err.textContent = msg || ""; err.hidden = !msg; };
      register(`business_hours.days.${d}`, row, () => (open.checked ? [from.value.trim(), to.value.trim()] : undefined));
      return row;
    }));
    const wrap = h("div", { class: "field wide", "data-field": "business_hours.days" }, h("span", { class: "label" }, label("business_hours.days")), h("p", { class: "hint" }, t("settings.daysHint")), list);
    const err = h("p", { class: "field-error", hidden: true });
    wrap.append(err);
    wrap.setError = (msg) => { err.textContent = msg || ""; err.hidden = !msg; };
    register("business_hours.days", wrap, () => {
      const out = {};
      for (const d of DAYS) {
        const v = controls.get(`business_hours.days.${d}`).read();
        if (v) out[d] = v;
      }
      return out;
    });
    return wrap;
  }

  /** The whole object: what was loaded, with every control's value put back at its path. */
  function collect() {
    const out = structuredClone(settings);
    const skip = (path) => /^texts\./.test(path) || /^business_hours\.days\./.test(path);
    for (const [path, c] of controls) {
      if (skip(path)) continue;
      const parts = path.split(".");
      let o = out;
      for (const p of parts.slice(0, -1)) o = o[p] ||= {};
      o[parts[parts.length - 1]] = c.read();
    }
    return out;
  }

  function showErrors(details) {
    const left = [];
    for (const d of details) {
      let path = d.field || "";
      while (path && !controls.has(path)) path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "";
      const c = controls.get(path);
      if (c && c.wrap.setError) c.wrap.setError(d.message);
      else left.push(d);
    }
    return left;
  }

  const keys = [...ORDER.filter((k) => k in settings), ...Object.keys(settings).filter((k) => !ORDER.includes(k))];
  const top = h("div", { class: "status-area", "aria-live": "polite" }, banner);
  const save = h("button", { type: "submit", class: "primary", "data-aicc": "settings-save" }, t("common.save"));
  const reset = h("button", { type: "button", "data-aicc": "settings-reset", onclick: () => draw(ctx, settings, null) }, t("settings.reset"));
  const bottom = h("div", { class: "status-area", "aria-live": "polite" });
  const form = h("form", { class: "settings", "data-aicc": "settings-form", novalidate: true },
    h("p", { class: "hint" }, t("settings.hint")),
    keys.map((k) => {
      const v = settings[k];
      if (k === "texts") return any(k, v);
      if (v && typeof v === "object" && !Array.isArray(v)) return group(k, v);
      return h("fieldset", { class: "group" }, any(k, v));
    }),
    h("div", { class: "actions sticky" }, save, reset), bottom);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    for (const c of controls.values()) c.wrap.setError?.("");
    replace(top);
    replace(bottom);
    let body;
    try {
      body = collect();
    } catch (e) {
      showErrors([{ field: e.field, message: e.message }]);
      return;
    }
    await busy(save, async () => {
      try {
        const saved = await ctx.api.put("/v1/admin/settings", body);
        draw(ctx, saved, notice(t("settings.saved"), { tag: "settings-saved" }));
      } catch (e) {
        const all = e.details || [];
        const left = showErrors(all);
        const box = errorBox(t, { ...e, message: e.message, details: left }, { tag: "settings-error" });
        if (all.length > left.length) box.append(h("p", {}, t("settings.fixFields", { count: all.length - left.length })));
        replace(top, box);
        replace(bottom, errorBox(t, { message: e.message, details: [] }));
        form.querySelector("[aria-invalid=true]")?.focus();
      }
    });
  });
  replace(ctx.view, h("h2", {}, t("nav.settings")), top, form);
}
