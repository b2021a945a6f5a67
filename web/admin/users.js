// Users: agents and admins of the tenant — list, create (a password is
// generated and shown once when left empty), edit, delete. The API names a
// bad field by its error code or message, so errors land next to the field.

import { h, replace } from "../common/dom.js";
import { field, errorBox, notice, tableWrap, confirmDialog, busy, fmtDateTime, panel } from "./ui.js";

/** Which form field an error from the users API is about. */
export function userErrorField(e) {
  if (e.details?.[0]?.field) return e.details[0].field;
  if (e.code === "invalid_email" || e.code === "user_exists") return "email";
  if (e.code === "weak_password") return "password";
  if (e.code === "last_admin") return "role";
  const m = /^(name|teams|max_concurrent|role|email|password)\b/.exec(e.message || "");
  return m ? m[1] : null;
}

export async function render(ctx) {
  const { t } = ctx;
  const listBox = h("div", { "data-aicc": "users" });
  const formBox = h("div");
  const status = h("div", { class: "status-area", "aria-live": "polite" });

  async function load() {
    const r = await ctx.api.get("/v1/admin/users");
    if (!ctx.current()) return;
    replace(listBox, table(r.users));
  }

  function table(list) {
    if (!list.length) return h("p", { class: "muted" }, t("users.none"));
    const me = ctx.session.user.id;
    return tableWrap(h("table", {},
      h("thead", {}, h("tr", {}, ["users.name", "users.email", "users.role", "users.teams", "users.maxConcurrent", "users.createdCol", "kb.colActions"]
        .map((k) => h("th", { scope: "col" }, t(k))))),
      h("tbody", {}, list.map((u) => h("tr", { "data-aicc": "user-row", "data-email": u.email, "data-id": u.id },
        h("td", {}, u.name, u.id === me ? h("span", { class: "muted" }, ` (${t("users.you")})`) : null),
        h("td", {}, u.email),
        h("td", {}, h("span", { class: `badge ${u.role}` }, t(`users.role.${u.role}`))),
        h("td", {}, u.teams.join(", ") || "—"),
        h("td", { class: "num" }, String(u.max_concurrent)),
        h("td", {}, fmtDateTime(u.created_at, ctx.locale)),
        h("td", { class: "row-actions" },
          h("button", { type: "button", "data-aicc": "user-edit", onclick: () => showForm(u) }, t("common.edit")),
          u.id === me ? null : h("button", { type: "button", class: "danger", "data-aicc": "user-delete", onclick: (e) => remove(u, e.currentTarget) }, t("common.delete"))))))));
  }

  async function remove(u, button) {
    if (!(await confirmDialog(t, t("users.confirmDelete", { name: u.name, email: u.email }), { okLabel: t("common.delete"), danger: true }))) return;
    await busy(button, async () => {
      try {
        await ctx.api.del(`/v1/admin/users/${u.id}`);
        replace(status, notice(t("users.deleted", { email: u.email })));
        await load();
      } catch (e) {
        replace(status, errorBox(t, e));
      }
    });
  }

  function showForm(u) {
    const isNew = !u;
    const inputs = {
      email: h("input", { type: "email", required: isNew, readOnly: !isNew, value: u?.email || "", autocomplete: "off", "data-aicc": "user-email" }),
      name: h("input", { value: u?.name || "", maxLength: 100, required: !isNew, "data-aicc": "user-name" }),
      role: h("select", { "data-aicc": "user-role" }, ["agent", "admin"].map((r) => h("option", { value: r, selected: (u?.role || "agent") === r }, t(`users.role.${r}`)))),
      password: h("input", { type: "password", minLength: 8, maxLength: 256, autocomplete: "new-password", "data-aicc": "user-password" }),
      teams: h("input", { value: (u?.teams || []).join(", "), "data-aicc": "user-teams" }),
      max_concurrent: h("input", { type: "number", min: 1, max: 100, value: String(u?.max_concurrent ?? 5), required: true, "data-aicc": "user-max-concurrent" }),
    };
    const fields = {
      email: field(t("users.email"), inputs.email, { name: "email" }),
      name: field(t("users.name"), inputs.name, { name: "name", hint: isNew ? t("users.nameHint") : null }),
      role: field(t("users.role"), inputs.role, { name: "role" }),
      password: field(isNew ? t("users.password") : t("users.newPassword"), inputs.password, { name: "password", hint: isNew ? t("users.passwordHint") : t("users.newPasswordHint") }),
      teams: field(t("users.teams"), inputs.teams, { name: "teams", hint: t("users.teamsHint") }),
      max_concurrent: field(t("users.maxConcurrent"), inputs.max_concurrent, { name: "max_concurrent", hint: t("users.maxConcurrentHint") }),
    };
    const general = h("div", { class: "status-area", "aria-live": "polite" });
    const save = h("button", { type: "submit", class: "primary", "data-aicc": "user-save" }, isNew ? t("users.create") : t("common.save"));
    const cancel = h("button", { type: "button", onclick: () => replace(formBox) }, t("common.cancel"));
    const form = h("form", { class: "grid-form", "data-aicc": "user-form", novalidate: true },
      h("h3", { class: "wide" }, isNew ? t("users.new") : t("users.editTitle", { email: u.email })),
      Object.values(fields), h("div", { class: "actions wide" }, save, cancel), general);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      Object.values(fields).forEach((f) => f.setError(""));
      replace(general);
      const teams = inputs.teams.value.split(",").map((s) => s.trim()).filter(Boolean);
      const max = Number(inputs.max_concurrent.value);
      const body = { role: inputs.role.value, teams, max_concurrent: Number.isFinite(max) ? Math.trunc(max) : inputs.max_concurrent.value };
      if (inputs.name.value.trim() || !isNew) body.name = inputs.name.value;
      if (inputs.password.value) body.password = inputs.password.value;
      if (isNew) body.email = inputs.email.value;
      await busy(save, async () => {
        try {
          if (isNew) {
            const r = await ctx.api.post("/v1/admin/users", body);
            replace(formBox);
            replace(status, h("div", { class: "notice ok", role: "status", "data-aicc": "user-created" },
              h("p", {}, t("users.created", { email: r.user.email })),
              r.password ? h("p", {}, t("users.generated"), " ", h("code", { "data-aicc": "user-generated-password" }, r.password)) : null));
          } else {
            await ctx.api.put(`/v1/admin/users/${u.id}`, body);
            replace(formBox);
            replace(status, notice(t("users.saved", { email: u.email }), { tag: "user-saved" }));
          }
          await load();
        } catch (e) {
          const f = userErrorField(e);
          if (f && fields[f]) {
            fields[f].setError(e.message);
            (inputs[f].readOnly ? save : inputs[f]).focus();
          } else replace(general, errorBox(t, e));
        }
      });
    });
    replace(formBox, panel(null, form));
    (isNew ? inputs.email : inputs.name).focus();
  }

  replace(ctx.view,
    h("h2", {}, t("nav.users")),
    h("div", { class: "actions" }, h("button", { type: "button", class: "primary", "data-aicc": "user-new", onclick: () => showForm(null) }, t("users.new"))),
    formBox, status, panel(null, listBox));
  await load();
}
