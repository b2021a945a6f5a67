// Knowledge base: upload a FAQ file (CSV, JSON, XLSX) as a new draft, the
// version list with publish / rollback, and article view / edit / delete
// (each edit writes a new draft version; nothing goes live until published).

import { h, replace } from "../common/dom.js";
import { field, errorBox, lineErrors, notice, tableWrap, confirmDialog, busy, fmtDateTime, panel } from "./ui.js";

const TYPES = {
  csv: "text/csv",
  tsv: "text/csv",
  json: "application/json",
  xlsx: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
};

/** The Content-Type for an upload, from the file name first (browsers leave .csv types to the OS). */
export function contentTypeOf(file) {
  const ext = (file.name.split(".").pop() || "").toLowerCase();
  return TYPES[ext] || file.type || "application/octet-stream";
}

export function versionState(v) {
  return v.live ? "live" : v.published_at ? "old" : "draft";
}

/** Publishing a version that was live before, older than the live one, is a rollback. */
function isRollback(v, live) {
  return Boolean(live && v.version < live.version && v.published_at);
}

export async function fetchVersions(api) {
  const r = await api.get("/v1/admin/kb/versions");
  return [...r.versions].sort((a, b) => b.version - a.version);
}

/** Options for a version picker: the live one first, then every version, newest first. */
export function versionOptions(t, versions, selected) {
  const live = versions.find((v) => v.live);
  return [
    h("option", { value: "", selected: !selected }, live ? t("kb.optLive", { version: live.version }) : t("kb.optLiveNone")),
    ...versions.map((v) => h("option", { value: String(v.version), selected: String(v.version) === String(selected) },
      t("kb.optVersion", { version: v.version, state: t(`kb.state.${versionState(v)}`), count: v.article_count }))),
  ];
}

export async function render(ctx) {
  const { t, params } = ctx;
  const versionsBox = h("div", { "data-aicc": "versions" });
  const status = h("div", { class: "status-area", "aria-live": "polite" });
  let versions = [];

  async function loadVersions() {
    versions = await fetchVersions(ctx.api);
    if (!ctx.current()) return;
    replace(versionsBox, versionsTable(ctx, versions, publish));
    editor.refreshVersions(versions);
  }

  async function publish(v, button) {
    const live = versions.find((x) => x.live);
    const rollback = isRollback(v, live);
    const ok = await confirmDialog(t, t(rollback ? "kb.confirmRollback" : "kb.confirmPublish", { version: v.version, count: v.article_count }), {
      okLabel: t(rollback ? "kb.rollback" : "kb.publish"),
    });
    if (!ok) return false;
    let done = false;
    await busy(button, async () => {
      try {
        const r = await ctx.api.post(`/v1/admin/kb/versions/${v.version}/publish`);
        replace(status, notice(t("kb.published", { version: r.version }), { tag: "publish-result" }));
        await loadVersions();
        done = true;
      } catch (e) {
        replace(status, errorBox(t, e));
      }
    });
    return done;
  }

  const upload = uploadPanel(ctx, loadVersions, publish, () => versions);
  const editor = articlePanel(ctx, loadVersions);

  replace(ctx.view,
    h("h2", {}, t("nav.kb")),
    upload,
    panel(t("kb.versions"), h("p", { class: "hint" }, t("kb.versionsHint")), status, versionsBox),
    editor.el);
  await loadVersions();
  if (params.get("article")) editor.open(params.get("article"), params.get("version"));
  else if (params.get("new")) editor.blank({ question: params.get("question") || "", language: params.get("language") || "" });
}

function uploadPanel(ctx, reload, publish, getVersions) {
  const { t } = ctx;
  const file = h("input", { type: "file", required: true, accept: ".csv,.tsv,.json,.xlsx,text/csv,application/json,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "data-aicc": "import-file" });
  const mode = h("select", { "data-aicc": "import-mode" },
    h("option", { value: "merge" }, t("kb.modeMerge")),
    h("option", { value: "replace" }, t("kb.modeReplace")));
  const submit = h("button", { type: "submit", class: "primary", "data-aicc": "import-submit" }, t("kb.upload"));
  const result = h("div", { class: "status-area", "aria-live": "polite", "data-aicc": "import-status" });
  const form = h("form", { class: "grid-form" },
    field(t("kb.file"), file, { hint: t("kb.fileHint") }),
    field(t("kb.mode"), mode, { hint: t("kb.modeHint") }),
    h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = file.files[0];
    if (!f) return;
    replace(result, h("p", { class: "muted" }, t("kb.uploading", { name: f.name })));
    await busy(submit, async () => {
      try {
        const r = await ctx.api.request("POST", "/v1/admin/kb/import", {
          body: f, contentType: contentTypeOf(f), query: { mode: mode.value },
        });
        await reload();
        const v = getVersions().find((x) => x.version === r.version) || { version: r.version, article_count: r.imported };
        const publishBtn = h("button", { type: "button", class: "primary", "data-aicc": "import-publish" }, t("kb.publishThis"));
        publishBtn.addEventListener("click", async () => {
          if (await publish(v, publishBtn)) {
            publishBtn.replaceWith(notice(t("kb.published", { version: v.version }), { tag: "import-published" }));
          }
        });
        replace(result, h("div", { class: "notice ok", role: "status", "data-aicc": "import-result", "data-version": r.version },
          h("p", {}, t("kb.imported", { version: r.version, count: r.imported })),
          h("p", {}, t("kb.draftHint")),
          h("div", { class: "actions" },
            h("a", { class: "button", href: `#/search?version=${r.version}`, "data-aicc": "import-search-draft" }, t("kb.searchThis")),
            publishBtn)));
        file.value = "";
      } catch (e) {
        if (e.status === 401) return;
        const box = h("div", { class: "notice error", role: "alert", "data-aicc": "import-error" },
          h("p", {}, e.message),
          e.status === 422 || e.status === 413 || e.status === 415
            ? h("p", { class: "strong" }, t(e.details?.length ? "kb.nothingImported" : "kb.nothingImportedPlain"))
            : null,
          e.details?.length ? lineErrors(t, e.details, "import-error-row") : null);
        replace(result, box);
      }
    });
  });
  return panel(t("kb.upload"), h("p", { class: "hint" }, t("kb.uploadHint")), form, result);
}

function versionsTable(ctx, versions, publish) {
  const { t, locale } = ctx;
  if (!versions.length) return h("p", { class: "muted" }, t("kb.noVersions"));
  const live = versions.find((v) => v.live);
  const byNum = new Map(versions.map((v) => [v.version, v]));
  const rows = versions.map((v) => {
    const st = versionState(v);
    const parent = v.parent !== null && v.parent !== undefined ? byNum.get(v.parent) : null;
    const delta = parent ? v.article_count - parent.article_count : null;
    const rollback = isRollback(v, live);
    return h("tr", { "data-aicc": "version-row", "data-version": v.version, "data-state": st },
      h("td", { class: "num" }, h("strong", {}, `v${v.version}`)),
      h("td", {}, h("span", { class: `badge ${st}`, "data-aicc": "version-state" }, t(`kb.state.${st}`))),
      h("td", {}, t(`kb.source.${v.source}`) === `kb.source.${v.source}` ? v.source : t(`kb.source.${v.source}`),
        v.parent ? h("span", { class: "muted" }, ` ← v${v.parent}`) : null),
      h("td", { class: "num" }, String(v.article_count),
        delta !== null && delta !== 0 ? h("span", { class: delta > 0 ? "delta up" : "delta down" }, ` (${delta > 0 ? "+" : ""}${delta})`) : null),
      h("td", {}, fmtDateTime(v.created_at, locale)),
      h("td", {}, fmtDateTime(v.published_at, locale)),
      h("td", { class: "row-actions" },
        h("a", { class: "button", href: `#/search?version=${v.version}`, "data-aicc": "version-search" }, t("kb.search")),
        v.live ? null : h("button", {
          type: "button", class: rollback ? "" : "primary", "data-aicc": rollback ? "rollback" : "publish", "data-version": v.version,
          onclick: (e) => publish(v, e.currentTarget),
        }, t(rollback ? "kb.rollback" : "kb.publish"))));
  });
  return tableWrap(h("table", {},
    h("caption", { class: "sr-only" }, t("kb.versions")),
    h("thead", {}, h("tr", {}, ["kb.colVersion", "kb.colState", "kb.colSource", "kb.colArticles", "kb.colCreated", "kb.colPublished", "kb.colActions"]
      .map((k) => h("th", { scope: "col" }, t(k))))),
    h("tbody", {}, rows)));
}

/** Find an article by id in a version, then edit or delete it; or write a new one. */
function articlePanel(ctx, reload) {
  const { t } = ctx;
  const findId = h("input", { required: true, "data-aicc": "article-find-id", autocomplete: "off", spellcheck: false });
  const findVersion = h("select", { "data-aicc": "article-find-version" });
  const findBtn = h("button", { type: "submit", "data-aicc": "article-find" }, t("kb.open"));
  const newBtn = h("button", { type: "button", "data-aicc": "article-new", onclick: () => blank({}) }, t("kb.newArticle"));
  const area = h("div", { "aria-live": "polite" });
  const finder = h("form", { class: "inline-form" },
    field(t("kb.articleId"), findId), field(t("kb.inVersion"), findVersion),
    h("div", { class: "actions" }, findBtn, newBtn));
  finder.addEventListener("submit", (ev) => {
    ev.preventDefault();
    open(findId.value.trim(), findVersion.value);
  });

  async function open(id, version) {
    findId.value = id;
    if (version) findVersion.value = version;
    replace(area, h("p", { class: "muted" }, t("common.loading")));
    try {
      const a = await ctx.api.request("GET", `/v1/admin/kb/articles/${encodeURIComponent(id)}`, { query: { version: version || undefined } });
      showForm(a, version, false);
    } catch (e) {
      replace(area, errorBox(t, e));
    }
  }

  function blank(prefill) {
    showForm({ id: "", intent: "", language: prefill.language || "", question: prefill.question || "", answer: "", tags: [] }, findVersion.value, true);
  }

  function showForm(a, version, isNew) {
    const inputs = {
      id: h("input", { value: a.id, required: true, readOnly: !isNew, "data-aicc": "article-id", spellcheck: false, placeholder: isNew ? t("kb.idAuto") : null }),
      intent: h("input", { value: a.intent || "", "data-aicc": "article-intent", spellcheck: false }),
      language: h("select", { "data-aicc": "article-language" },
        ["", "ko", "en"].map((l) => h("option", { value: l, selected: (a.language || "") === l }, l ? l : t("kb.langAuto")))),
      question: h("textarea", { rows: 2, required: true, "data-aicc": "article-question" }, a.question),
      answer: h("textarea", { rows: 6, required: true, "data-aicc": "article-answer" }, a.answer),
      tags: h("input", { value: (a.tags || []).join(", "), "data-aicc": "article-tags" }),
    };
    if (isNew) inputs.id.required = false;
    const base = version || "";
    const baseLabel = base ? t("kb.baseVersion", { version: base }) : t("kb.baseLive");
    const msg = h("div", { class: "status-area", "aria-live": "polite" });
    const save = h("button", { type: "submit", class: "primary", "data-aicc": "article-save" }, t("kb.saveDraft"));
    const del = isNew ? null : h("button", { type: "button", class: "danger", "data-aicc": "article-delete" }, t("kb.deleteDraft"));
    const form = h("form", { class: "grid-form", "data-aicc": "article-form" },
      h("p", { class: "notice" }, t("kb.editMakesDraft"), " ", baseLabel),
      field(t("kb.articleId"), inputs.id, { hint: isNew ? t("kb.idHint") : null }),
      field(t("kb.intent"), inputs.intent),
      field(t("kb.language"), inputs.language),
      field(t("kb.question"), inputs.question, { wide: true }),
      field(t("kb.answer"), inputs.answer, { wide: true }),
      field(t("kb.tags"), inputs.tags, { hint: t("kb.tagsHint"), wide: true }),
      h("div", { class: "actions wide" }, save, del),
      msg);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      // A new article without an id gets a stable one from its language and question
      // only through an import; here the admin names it (or we derive a readable one).
      const id = inputs.id.value.trim() || `faq-${Date.now().toString(36)}`;
      const body = {
        intent: inputs.intent.value.trim() || null,
        language: inputs.language.value || undefined,
        question: inputs.question.value,
        answer: inputs.answer.value,
        tags: inputs.tags.value.split(",").map((s) => s.trim()).filter(Boolean),
      };
      await busy(save, async () => {
        try {
          const r = await ctx.api.request("PUT", `/v1/admin/kb/articles/${encodeURIComponent(id)}`, { json: body, query: { version: base || undefined } });
          await reload();
          savedNotice(msg, r.version);
          inputs.id.value = id;
          inputs.id.readOnly = true;
        } catch (e) {
          replace(msg, errorBox(t, e));
        }
      });
    });
    del?.addEventListener("click", async () => {
      if (!(await confirmDialog(t, t("kb.confirmDelete", { id: a.id }), { okLabel: t("kb.deleteDraft"), danger: true }))) return;
      await busy(del, async () => {
        try {
          const r = await ctx.api.request("DELETE", `/v1/admin/kb/articles/${encodeURIComponent(a.id)}`, { query: { version: base || undefined } });
          await reload();
          savedNotice(msg, r.version, "kb.deletedDraft");
        } catch (e) {
          replace(msg, errorBox(t, e));
        }
      });
    });
    replace(area, form);
    (isNew ? inputs.id : inputs.question).focus();
  }

  function savedNotice(msg, version, key = "kb.savedDraft") {
    replace(msg, h("div", { class: "notice ok", role: "status", "data-aicc": "article-result", "data-version": version.version },
      h("p", {}, t(key, { version: version.version, count: version.article_count })),
      h("div", { class: "actions" },
        h("a", { class: "button", href: `#/search?version=${version.version}` }, t("kb.searchThis")))));
  }

  function refreshVersions(versions) {
    const keep = findVersion.value;
    replace(findVersion, versionOptions(t, versions, keep));
  }

  const el = panel(t("kb.articles"), h("p", { class: "hint" }, t("kb.articlesHint")), finder, area);
  return { el, open, blank, refreshVersions };
}
