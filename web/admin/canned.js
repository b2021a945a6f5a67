// Canned responses: the replies agents insert with one click.

import { h, replace } from "../common/dom.js";
import { field, errorBox, notice, tableWrap, confirmDialog, busy, fmtDateTime, panel } from "./ui.js";

function cannedErrorField(e) {
  const m = /^(title|text|language)\b/.exec(e.message || "");
  return m ? m[1] : null;
}

export async function render(ctx) {
  const { t } = ctx;
  const listBox = h("div", { "data-aicc": "canned" });
  const formBox = h("div");
  const status = h("div", { class: "status-area", "aria-live": "polite" });

  async function load() {
    const r = await ctx.api.get("/v1/admin/canned");
    if (!ctx.current()) return;
    replace(listBox, r.canned.length ? tableWrap(h("table", {},
      h("thead", {}, h("tr", {}, ["canned.title", "canned.language", "canned.text", "canned.updated", "kb.colActions"].map((k) => h("th", { scope: "col" }, t(k))))),
      h("tbody", {}, r.canned.map((c) => h("tr", { "data-aicc": "canned-row", "data-id": c.id },
        h("td", {}, h("strong", {}, c.title)),
        h("td", {}, c.language),
        h("td", { class: "pre", lang: c.language }, c.text),
        h("td", {}, fmtDateTime(c.updated_at, ctx.locale)),
        h("td", { class: "row-actions" },
          h("button", { type: "button", "data-aicc": "canned-edit", onclick: () => showForm(c) }, t("common.edit")),
          h("button", { type: "button", class: "danger", "data-aicc": "canned-delete", onclick: (e) => remove(c, e.currentTarget) }, t("common.delete")))))))) 
      : h("p", { class: "muted" }, t("canned.none")));
  }

  async function remove(c, button) {
    if (!(await confirmDialog(t, t("canned.confirmDelete", { title: c.title }), { okLabel: t("common.delete"), danger: true }))) return;
    await busy(button, async () => {
      try {
        await ctx.api.del(`/v1/admin/canned/${c.id}`);
        replace(status, notice(t("canned.deleted", { title: c.title })));
        await load();
      } catch (e) {
        replace(status, errorBox(t, e));
      }
    });
  }

  function showForm(c) {
    const inputs = {
      title: h("input", { value: c?.title || "", required: true, maxLength: 100, "data-aicc": "canned-title" }),
      language: h("select", { "data-aicc": "canned-language" }, ["ko", "en"].map((l) => h("option", { value: l, selected: (c?.language || ctx.locale) === l }, t(`common.lang.${l}`)))),
      text: h("textarea", { rows: 4, required: true, "data-aicc": "canned-text" }, c?.text || ""),
    };
    const fields = {
      title: field(t("canned.title"), inputs.title, { name: "title" }),
      language: field(t("canned.language"), inputs.language, { name: "language" }),
      text: field(t("canned.text"), inputs.text, { name: "text", wide: true }),
    };
    const general = h("div", { class: "status-area" });
    const save = h("button", { type: "submit", class: "primary", "data-aicc": "canned-save" }, t("common.save"));
    const form = h("form", { class: "grid-form", "data-aicc": "canned-form", novalidate: true },
      h("h3", { class: "wide" }, c ? t("canned.editTitle") : t("canned.new")),
      Object.values(fields),
      h("div", { class: "actions wide" }, save, h("button", { type: "button", onclick: () => replace(formBox) }, t("common.cancel"))),
      general);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      Object.values(fields).forEach((f) => f.setError(""));
      replace(general);
      const body = { title: inputs.title.value, text: inputs.text.value, language: inputs.language.value };
      await busy(save, async () => {
        try {
          if (c) await ctx.api.put(`/v1/admin/canned/${c.id}`, body);
          else await ctx.api.post("/v1/admin/canned", body);
          replace(formBox);
          replace(status, notice(t("canned.saved", { title: body.title.trim() }), { tag: "canned-saved" }));
          await load();
        } catch (e) {
          const f = cannedErrorField(e);
          if (f && fields[f]) {
            fields[f].setError(e.message);
            inputs[f].focus();
          } else replace(general, errorBox(t, e));
        }
      });
    });
    replace(formBox, panel(null, form));
    inputs.title.focus();
  }

  replace(ctx.view, h("h2", {}, t("nav.canned")), h("p", { class: "hint" }, t("canned.hint")),
    h("div", { class: "actions" }, h("button", { type: "button", class: "primary", "data-aicc": "canned-new", onclick: () => showForm(null) }, t("canned.new"))),
    formBox, status, panel(null, listBox));
  await load();
}
