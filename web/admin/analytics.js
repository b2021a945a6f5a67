// Analytics: tiles for the range, charts per bucket, top intents, and the
// unanswered questions (clustered) — the knowledge gaps to fill, each with a
// shortcut to write the missing article.

import { h, replace } from "../common/dom.js";
import { formatDuration } from "../common/i18n.js";
import { field, errorBox, busy, panel, fmtPct, fmtDate, fmtDateTime } from "./ui.js";
import { barChart, lineChart, hbarChart } from "./chart.js";

function isoDay(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

export async function render(ctx) {
  const { t, params } = ctx;
  const today = new Date();
  const monthAgo = new Date(today.getTime() - 29 * 86400e3);
  const from = h("input", { type: "date", required: true, value: params.get("from") || isoDay(monthAgo), "data-aicc": "analytics-from" });
  const to = h("input", { type: "date", required: true, value: params.get("to") || isoDay(today), "data-aicc": "analytics-to" });
  const bucket = h("select", { "data-aicc": "analytics-bucket" },
    ["day", "week", "hour"].map((b) => h("option", { value: b, selected: (params.get("bucket") || "day") === b }, t(`analytics.bucket.${b}`))));
  const submit = h("button", { type: "submit", class: "primary", "data-aicc": "analytics-submit" }, t("analytics.show"));
  const out = h("div", { "aria-live": "polite", "data-aicc": "analytics-output" });
  const form = h("form", { class: "inline-form" },
    field(t("analytics.from"), from), field(t("analytics.to"), to), field(t("analytics.bucket"), bucket),
    h("div", { class: "actions" }, submit));

  async function load() {
    // The dates are local calendar days, the last one included: send local
    // midnights as RFC 3339, `to` exclusive (the next midnight).
    const start = new Date(`${from.value}T00:00:00`);
    const end = new Date(new Date(`${to.value}T00:00:00`).getTime() + 86400e3);
    history.replaceState(null, "", `#/analytics?${new URLSearchParams({ from: from.value, to: to.value, bucket: bucket.value })}`);
    await busy(submit, async () => {
      try {
        const a = await ctx.api.get("/v1/admin/analytics", { from: start.toISOString(), to: end.toISOString(), bucket: bucket.value });
        if (ctx.current()) replace(out, report(ctx, a, bucket.value));
      } catch (e) {
        replace(out, errorBox(t, e));
      }
    });
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load();
  });
  replace(ctx.view, h("h2", {}, t("nav.analytics")), panel(null, form), out);
  await load();
}

function report(ctx, a, bucket) {
  const { t, locale } = ctx;
  const label = (iso) => bucket === "hour"
    ? new Date(iso).toLocaleTimeString(locale === "ko" ? "ko-KR" : "en-GB", { hour: "2-digit", minute: "2-digit" })
    : fmtDate(iso, locale);
  const labels = a.series.map((p) => label(p.start));
  const tableLabel = t("analytics.showData");
  const tiles = h("div", { class: "tiles", "data-aicc": "analytics-tiles" },
    tile(t("analytics.conversations"), String(a.conversations), "conversations"),
    tile(t("analytics.containment"), fmtPct(a.containment_rate), "containment", t("analytics.containmentHint")),
    tile(t("analytics.handoff"), fmtPct(a.handoff_rate), "handoff", t("analytics.handoffHint")),
    tile(t("analytics.firstResponse"), a.avg_first_response_ms === null ? "—" : formatDuration(a.avg_first_response_ms, locale), "first-response"),
    tile(t("analytics.csat"), a.csat_avg === null ? "—" : `${a.csat_avg.toFixed(2)} / 5`, "csat", t("analytics.csatCount", { count: a.csat_count })),
    tile(t("analytics.botTurns"), String(a.bot_turns), "bot-turns"),
    tile(t("analytics.idleClosed"), String(a.idle_closed ?? 0), "idle-closed"));

  const charts = h("div", { class: "charts" },
    barChart({ title: t("analytics.chartConversations"), labels, values: a.series.map((p) => p.conversations), tableLabel, tag: "chart-conversations" }),
    lineChart({
      title: t("analytics.chartRates"), labels, min: 0, max: 1, format: (v) => `${Math.round(v * 100)}%`, tableLabel, tag: "chart-rates",
      series: [
        { name: t("analytics.containment"), values: a.series.map((p) => p.containment_rate) },
        { name: t("analytics.handoff"), values: a.series.map((p) => p.handoff_rate) },
      ],
    }),
    lineChart({
      title: t("analytics.chartCsat"), labels, min: 1, max: 5, format: (v) => Number(v).toFixed(1), tableLabel, tag: "chart-csat",
      series: [{ name: t("analytics.csat"), values: a.series.map((p) => p.csat_avg) }],
    }));

  const paths = Object.entries(a.paths || {}).sort((x, y) => y[1] - x[1]).map(([name, count]) => ({ name: t(`analytics.path.${name}`) === `analytics.path.${name}` ? name : t(`analytics.path.${name}`), count }));
  const side = h("div", { class: "charts" },
    a.top_intents.length
      ? hbarChart({ title: t("analytics.topIntents"), items: a.top_intents.slice(0, 10), tableLabel, tag: "chart-intents" })
      : panel(t("analytics.topIntents"), h("p", { class: "muted" }, t("analytics.none"))),
    paths.length ? hbarChart({ title: t("analytics.paths"), items: paths, tableLabel, tag: "chart-paths" }) : null,
    a.handoff_reasons?.length ? hbarChart({ title: t("analytics.handoffReasons"), items: a.handoff_reasons, tableLabel, tag: "chart-handoff-reasons" }) : null);

  return h("div", { class: "report" }, tiles, charts, side, gaps(ctx, a.unanswered));
}

function tile(label, value, tag, hint) {
  return h("div", { class: "tile", "data-aicc": `tile-${tag}` }, h("div", { class: "tile-label" }, label), h("div", { class: "tile-value" }, value),
    hint ? h("div", { class: "tile-hint" }, hint) : null);
}

function gaps(ctx, unanswered) {
  const { t, locale } = ctx;
  const body = unanswered.length
    ? h("ol", { class: "gaps", "data-aicc": "unanswered" }, unanswered.map((g) => {
      const add = new URLSearchParams({ new: "1", question: g.text, language: g.language || "" });
      return h("li", { class: "gap", "data-aicc": "gap" },
        h("div", { class: "gap-head" },
          h("strong", { lang: g.language }, g.text),
          h("span", { class: "badge" }, t("analytics.times", { count: g.count }))),
        h("p", { class: "muted" }, t("analytics.gapDetail", { dont_know: g.dont_know, thumbs_down: g.thumbs_down, language: g.language, last: fmtDateTime(g.last_at, locale) })),
        g.examples?.length > 1 ? h("ul", { class: "examples" }, g.examples.map((e) => h("li", { lang: g.language }, e))) : null,
        h("a", { class: "button", href: `#/kb?${add}`, "data-aicc": "gap-add-article" }, t("analytics.addArticle")));
    }))
    : h("p", { class: "muted" }, t("analytics.noGaps"));
  return panel(t("analytics.unanswered"), h("p", { class: "hint" }, t("analytics.unansweredHint")), body);
}
