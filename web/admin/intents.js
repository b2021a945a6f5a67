// Intents: import labelled examples (CSV text,intent[,language]), start a
// training job, and follow it to its metrics. The routes are optional in a
// server build: the OpenAPI document says whether they exist, and without
// them the section says so instead of offering buttons that cannot work.

import { h, replace } from "../common/dom.js";
import { field, errorBox, lineErrors, notice, busy, panel, tableWrap, fmtNum } from "./ui.js";

const ROUTES = ["/v1/admin/intents/import", "/v1/admin/intents/train", "/v1/admin/jobs/{id}"];
const POLL_MS = 1000;

export async function render(ctx) {
  const { t } = ctx;
  let paths = {};
  try {
    paths = (await ctx.openapi()).paths || {};
  } catch { /* unknown: treat as missing */ }
  if (!ctx.current()) return;
  const missing = ROUTES.filter((r) => !paths[r]);
  if (missing.length) {
    replace(ctx.view, h("h2", {}, t("nav.intents")), unavailable(t, missing));
    return;
  }

  let timer = null;
  let stopped = false;
  const file = h("input", { type: "file", required: true, accept: ".csv,text/csv", "data-aicc": "intents-file" });
  const importBtn = h("button", { type: "submit", class: "primary", "data-aicc": "intents-import" }, t("intents.import"));
  const importOut = h("div", { class: "status-area", "aria-live": "polite" });
  const importForm = h("form", { class: "grid-form" }, field(t("intents.file"), file, { hint: t("intents.fileHint") }), h("div", { class: "actions" }, importBtn));
  importForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = file.files[0];
    if (!f) return;
    await busy(importBtn, async () => {
      try {
        const r = await ctx.api.request("POST", "/v1/admin/intents/import", { body: f, contentType: "text/csv" });
        replace(importOut, h("div", { class: "notice ok", role: "status", "data-aicc": "intents-import-result" },
          h("p", {}, t("intents.imported")), summary(r)));
      } catch (e) {
        if (isMissing(e)) return replace(ctx.view, h("h2", {}, t("nav.intents")), unavailable(t, ROUTES));
        replace(importOut, h("div", { class: "notice error", role: "alert", "data-aicc": "intents-import-error" },
          h("p", {}, e.message), e.details?.length ? lineErrors(t, e.details, "intents-error-row") : null));
      }
    });
  });

  const trainBtn = h("button", { type: "button", class: "primary", "data-aicc": "intents-train" }, t("intents.train"));
  const progress = h("progress", { max: 1, value: 0, "data-aicc": "intents-progress", "aria-label": t("intents.progress") });
  const jobState = h("span", { "data-aicc": "intents-job-state" });
  const jobOut = h("div", { class: "status-area", "aria-live": "polite" });
  const jobBox = h("div", { class: "job", hidden: true }, h("div", { class: "job-line" }, progress, jobState), jobOut);
  trainBtn.addEventListener("click", async () => {
    trainBtn.disabled = true;
    try {
      const r = await ctx.api.post("/v1/admin/intents/train");
      jobBox.hidden = false;
      replace(jobOut);
      poll(r.job_id);
    } catch (e) {
      trainBtn.disabled = false;
      if (isMissing(e)) return replace(ctx.view, h("h2", {}, t("nav.intents")), unavailable(t, ROUTES));
      replace(jobOut, errorBox(t, e));
      jobBox.hidden = false;
    }
  });

  async function poll(id) {
    if (stopped) return;
    try {
      const job = await ctx.api.get(`/v1/admin/jobs/${encodeURIComponent(id)}`);
      const p = typeof job.progress === "number" ? Math.max(0, Math.min(1, job.progress > 1 ? job.progress / 100 : job.progress)) : null;
      if (p === null) progress.removeAttribute("value");
      else progress.value = p;
      jobState.textContent = `${t(`intents.state.${job.state}`) === `intents.state.${job.state}` ? job.state : t(`intents.state.${job.state}`)}${p === null ? "" : ` · ${Math.round(p * 100)}%`}`;
      if (["succeeded", "done", "finished", "completed", "failed", "error", "cancelled"].includes(job.state)) {
        trainBtn.disabled = false;
        const failed = ["failed", "error", "cancelled"].includes(job.state);
        replace(jobOut, failed
          ? notice(job.error?.message || job.error || job.message || t("intents.failed"), { kind: "error", tag: "intents-job-failed" })
          : h("div", { "data-aicc": "intents-metrics" }, h("h4", {}, t("intents.metrics")), job.metrics ? summary(job.metrics) : h("p", { class: "muted" }, "—")));
        return;
      }
    } catch (e) {
      if (e.status === 401) return;
      replace(jobOut, errorBox(t, e));
    }
    timer = setTimeout(() => poll(id), POLL_MS);
  }

  replace(ctx.view, h("h2", {}, t("nav.intents")),
    panel(t("intents.importTitle"), h("p", { class: "hint" }, t("intents.importHint")), importForm, importOut),
    panel(t("intents.trainTitle"), h("p", { class: "hint" }, t("intents.trainHint")), h("div", { class: "actions" }, trainBtn), jobBox));
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function isMissing(e) {
  return (e.status === 404 && e.code === "not_found" && /endpoint/.test(e.message)) || e.status === 405;
}

function unavailable(t, missing) {
  return h("div", { class: "notice", role: "status", "data-aicc": "intents-unavailable" },
    h("p", { class: "strong" }, t("intents.unavailable")),
    h("p", {}, t("intents.unavailableHint")),
    h("ul", {}, missing.map((r) => h("li", {}, h("code", {}, r)))),
    h("p", {}, t("intents.cli"), " ", h("code", {}, "aicc train intent --data messages.csv --out DIR")));
}

/** Any JSON object as a two-column table (metrics differ by trainer). */
function summary(obj) {
  if (obj === null || typeof obj !== "object") return h("p", {}, String(obj));
  const rows = [];
  const walk = (o, prefix) => {
    for (const [k, v] of Object.entries(o)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v && typeof v === "object" && !Array.isArray(v)) walk(v, key);
      else rows.push(h("tr", {}, h("th", { scope: "row" }, key),
        h("td", { class: "num" }, typeof v === "number" && !Number.isInteger(v) ? fmtNum(v, 4) : Array.isArray(v) ? v.join(", ") : String(v))));
    }
  };
  walk(obj, "");
  return tableWrap(h("table", { class: "compact" }, h("tbody", {}, rows)));
}
