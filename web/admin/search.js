// Search playground: what the bot would retrieve for a question, in the live
// knowledge or a draft, with the hybrid score the dialog compares with its
// thresholds and each retriever's own score.

import { h, replace } from "../common/dom.js";
import { field, errorBox, busy, fmtNum, panel } from "./ui.js";
import { fetchVersions, versionOptions } from "./kb.js";

export async function render(ctx) {
  const { t, params } = ctx;
  const versions = await fetchVersions(ctx.api).catch(() => []);
  if (!ctx.current()) return;
  const q = h("input", { type: "search", required: true, maxLength: 1000, value: params.get("q") || "", "data-aicc": "search-input", placeholder: t("search.placeholder") });
  const k = h("input", { type: "number", min: 1, max: 100, value: params.get("k") || "5", "data-aicc": "search-k", inputMode: "numeric" });
  const version = h("select", { "data-aicc": "search-version" }, versionOptions(t, versions, params.get("version")));
  const submit = h("button", { type: "submit", class: "primary", "data-aicc": "search-submit" }, t("search.submit"));
  const results = h("div", { "aria-live": "polite", "data-aicc": "search-output" });
  const form = h("form", { class: "search-form", role: "search" },
    field(t("search.query"), q, { wide: true }), field(t("search.k"), k), field(t("search.version"), version),
    h("div", { class: "actions" }, submit));

  async function run() {
    const query = { q: q.value.trim(), k: k.value || 5, version: version.value || undefined };
    if (!query.q) return;
    // Keep the query in the address so a reload or a shared link shows the same search.
    const sp = new URLSearchParams({ q: query.q, k: String(query.k) });
    if (query.version) sp.set("version", query.version);
    history.replaceState(null, "", `#/search?${sp}`);
    await busy(submit, async () => {
      try {
        const r = await ctx.api.get("/v1/kb/search", query);
        replace(results, hitList(ctx, r.hits, query.version));
      } catch (e) {
        replace(results, errorBox(t, e));
      }
    });
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    run();
  });

  replace(ctx.view, h("h2", {}, t("nav.search")), panel(null, h("p", { class: "hint" }, t("search.hint")), form), results);
  if (q.value) await run();
  else q.focus();
}

function hitList(ctx, hits, version) {
  const { t } = ctx;
  if (!hits.length) return h("p", { class: "muted", "data-aicc": "search-empty" }, t("search.none"));
  return h("ol", { class: "hits", "data-aicc": "search-results" }, hits.map((hit, i) => {
    const s = hit.scores || {};
    const edit = new URLSearchParams({ article: hit.article_id });
    if (version) edit.set("version", version);
    return h("li", { class: "hit panel", "data-aicc": "search-hit", "data-article": hit.article_id, "data-score": hit.score },
      h("div", { class: "hit-head" },
        h("span", { class: "rank" }, `${i + 1}`),
        h("strong", { class: "hit-question", "data-aicc": "hit-question" }, hit.question),
        h("meter", { min: 0, max: 1, low: 0.4, high: 0.75, optimum: 1, value: hit.score, "aria-label": t("search.score") }),
        h("span", { class: "score", "data-aicc": "hit-score" }, fmtNum(hit.score, 2))),
      h("p", { class: "hit-answer", "data-aicc": "hit-answer" }, hit.answer),
      h("dl", { class: "hit-meta" },
        meta(t("search.article"), h("code", {}, hit.article_id)),
        hit.intent ? meta(t("kb.intent"), hit.intent) : null,
        meta(t("kb.language"), hit.language),
        meta("hybrid", fmtNum(s.hybrid)),
        meta("bm25", fmtNum(s.bm25)),
        meta("dense", fmtNum(s.dense)),
        meta(t("search.retrievers"), h("span", { "data-aicc": "hit-retrievers" },
          (hit.retrievers || []).map((r) => h("span", { class: `badge ${r}` }, r))))),
      h("a", { href: `#/kb?${edit}`, class: "button", "data-aicc": "hit-edit" }, t("search.edit")));
  }));
}

function meta(label, value) {
  return h("div", {}, h("dt", {}, label), h("dd", {}, value));
}
