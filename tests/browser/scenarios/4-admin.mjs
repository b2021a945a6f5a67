// Admin console end to end: an admin uploads a FAQ file with a bad line and
// sees it refused by line number, fixes it, finds the new article in the
// draft with the search playground, publishes the draft, and a customer on
// another origin gets the new article's answer, with its citation, from the
// widget. The knowledge that was live before is published again at the end
// (in `finally`), so the shared server and later scenarios see the original.

import { openWidget, ask } from "../widget.mjs";

import fs from "node:fs";
import os from "node:os";
import path from "node:path";

// A made-up product nothing in the demo knowledge mentions, so only the new
// article can answer, and the exact question scores for the FAQ fast path.
const KO_ID = "aicc-gold-event-ko";
const EN_ID = "aicc-gold-event-en";
const KO_QUESTION = "AICC 골드 적금 이벤트는 무엇인가요?";
const KO_ANSWER = "AICC 골드 적금 이벤트는 브라우저 테스트용 가상 상품으로, 가입 코드 GOLD-4417을 입력하면 골드 배지를 드립니다.";
const KO_MARK = "GOLD-4417";
const EN_QUESTION = "What is the AICC Gold Savings event?";
const EN_ANSWER = "The AICC Gold Savings event is a made-up product for browser tests: enter the code GOLD-4417 to get a gold badge.";

function csv(enAnswer) {
  const q = (s) => `"${s.replace(/"/g, '""')}"`;
  return [
    "id,intent,language,question,answer,tags",
    [KO_ID, "aicc_gold_event", "ko", q(KO_QUESTION), q(KO_ANSWER), "event;savings"].join(","),
    [EN_ID, "aicc_gold_event", "en", q(EN_QUESTION), q(enAnswer), "event;savings"].join(","),
    "",
  ].join("\n");
}

export default async function (ctx) {
  const { expect } = ctx;
  const token = await ctx.api.login();
  const call = (method, p) => ctx.api.req(method, p, { token });
  const before = (await call("GET", "/v1/admin/kb/versions")).versions;
  const liveBefore = before.find((v) => v.live);
  const newest = Math.max(0, ...before.map((v) => v.version));
  ctx.log(`live knowledge before: v${liveBefore?.version} of ${before.length} versions`);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "aicc-admin-"));
  const file = path.join(dir, "faq.csv");
  const adminCtx = await ctx.browser.newContext({ locale: "ko-KR", viewport: { width: 1280, height: 900 } });
  let customerCtx = null;
  let published = null;
  try {
    const page = await adminCtx.newPage();
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));

    // 1. Login.
    await page.goto(new URL("/admin/", ctx.aiccUrl).href);
    await page.waitForSelector('[data-aicc="login-email"]');
    expect((await page.inputValue('[data-aicc="login-tenant"]')) === "demo", "the tenant field defaults to demo");
    await page.fill('[data-aicc="login-tenant"]', ctx.tenant);
    await page.fill('[data-aicc="login-email"]', ctx.admin.email);
    await page.fill('[data-aicc="login-password"]', ctx.admin.password);
    await ctx.shot(page, "admin-login");
    await page.click('[data-aicc="login-submit"]');
    await page.waitForSelector('[data-aicc="version-row"]');
    await ctx.shot(page, "admin-kb");

    // 2. Upload a file whose English answer is empty (line 3): refused, nothing imported.
    fs.writeFileSync(file, csv(""));
    await page.setInputFiles('[data-aicc="import-file"]', file);
    await page.selectOption('[data-aicc="import-mode"]', "merge");
    await page.click('[data-aicc="import-submit"]');
    const err = page.locator('[data-aicc="import-error"]');
    await err.waitFor();
    const rows = await page.locator('[data-aicc="import-error-row"]').evaluateAll((trs) => trs.map((tr) => ({ line: tr.dataset.line, text: tr.textContent })));
    ctx.log("import errors:", JSON.stringify(rows));
    expect(rows.length >= 1 && rows.some((r) => r.line === "3"), `the error names line 3: ${JSON.stringify(rows)}`);
    expect(/nothing was imported|가져오지 않았습니다/i.test(await err.textContent()), "the error says nothing was imported");
    const afterBad = (await call("GET", "/v1/admin/kb/versions")).versions;
    expect(afterBad.length === before.length, "a refused import creates no version");
    await ctx.shot(page, "admin-import-error");

    // 3. Fix the line and upload again: a new draft.
    fs.writeFileSync(file, csv(EN_ANSWER));
    await page.setInputFiles('[data-aicc="import-file"]', file);
    await page.selectOption('[data-aicc="import-mode"]', "merge");
    await page.click('[data-aicc="import-submit"]');
    const result = page.locator('[data-aicc="import-result"]');
    await result.waitFor();
    const draft = Number(await result.getAttribute("data-version"));
    expect(draft > newest, `a new draft version (got ${draft}, newest before ${newest})`);
    expect((await page.locator(`[data-aicc="version-row"][data-version="${draft}"]`).getAttribute("data-state")) === "draft", "the new version is listed as a draft");
    ctx.log(`draft v${draft}: ${await result.textContent()}`);
    await ctx.shot(page, "admin-import-ok");

    // 4. The search playground finds the new article in the draft (and not in the live version).
    await page.click('[data-aicc="import-search-draft"]');
    await page.waitForSelector('[data-aicc="search-input"]');
    expect((await page.inputValue('[data-aicc="search-version"]')) === String(draft), "the playground opens on the draft");
    await page.fill('[data-aicc="search-input"]', KO_QUESTION);
    await page.click('[data-aicc="search-submit"]');
    const first = page.locator('[data-aicc="search-hit"]').first();
    await first.waitFor({ timeout: 30_000 });
    const top = { id: await first.getAttribute("data-article"), score: Number(await first.getAttribute("data-score")) };
    ctx.log(`draft search: top hit ${top.id} score ${top.score}`);
    expect(top.id === KO_ID, `the draft's top hit is the new article (got ${top.id})`);
    expect((await first.locator('[data-aicc="hit-answer"]').textContent()).includes(KO_MARK), "the hit shows the new answer");
    await ctx.shot(page, "admin-search-draft");
    await page.selectOption('[data-aicc="search-version"]', "");
    await page.click('[data-aicc="search-submit"]');
    await page.waitForFunction((id) => {
      const hit = document.querySelector('[data-aicc="search-hit"]');
      const none = document.querySelector('[data-aicc="search-empty"]');
      return none || (hit && hit.dataset.article !== id);
    }, KO_ID, { timeout: 30_000 });
    ctx.log("the live version does not have the new article yet");

    // 5. Publish the draft (with the confirm dialog).
    await page.click('[data-aicc="nav-kb"]');
    const row = page.locator(`[data-aicc="version-row"][data-version="${draft}"]`);
    await row.waitFor();
    await row.locator('[data-aicc="publish"]').click();
    await page.locator('[data-aicc="confirm-ok"]').click();
    published = draft;
    await page.waitForSelector(`[data-aicc="version-row"][data-version="${draft}"][data-state="live"]`, { timeout: 120_000 });
    await ctx.shot(page, "admin-published");
    expect(pageErrors.length === 0, `no script errors in the console: ${pageErrors.join("; ")}`);

    // 6. A customer on the host site asks the new question; the widget answers from the new article.
    customerCtx = await ctx.browser.newContext({ locale: "ko-KR", viewport: { width: 420, height: 800 } });
    const host = await customerCtx.newPage();
    // Streamed token frames mean the RAG path; the fast path sends none.
    let tokenFrames = 0;
    host.on("websocket", (ws) => ws.on("framereceived", ({ payload }) => {
      try {
        if (JSON.parse(String(payload)).type === "token") tokenFrames += 1;
      } catch { /* not JSON */ }
    }));
    await openWidget(host, ctx.hostUrl);
    await ask(host, KO_QUESTION);
    // The stored reply (a streamed preview, if any, is replaced by it).
    const answer = host.locator('[data-aicc="msg"][data-sender="bot"]:not([data-state="preview"])', { hasText: KO_MARK }).last();
    await answer.waitFor({ timeout: 90_000 });
    const text = await answer.textContent();
    ctx.log(`bot answered (${tokenFrames} token frames):`, text);
    expect(text.includes(KO_ANSWER.slice(0, 30)), "the widget shows the new article's answer");
    // The citation names the article (its question is its title).
    const sources = answer.locator('[data-aicc="sources"]');
    await sources.waitFor({ timeout: 30_000 });
    const cited = await sources.textContent();
    expect(cited.includes(KO_QUESTION), `the citation carries the new article's title: ${cited}`);
    const citedIds = await sources.locator("[data-article-id]").evaluateAll((els) => els.map((e) => e.dataset.articleId));
    expect(citedIds.includes(KO_ID), `the citation names the new article: ${citedIds}`);
    // The exact question scores well above the direct threshold: the FAQ fast path, nothing generated.
    expect(tokenFrames === 0, `the fast path answers without streaming (${tokenFrames} token frames)`);
    await sources.locator("summary").click(); // show the cited titles in the screenshot
    await ctx.shot(host, "admin-widget-answer");

    // 7. Roll back in the console: publish the version that was live before.
    if (liveBefore) {
      await page.bringToFront();
      const old = page.locator(`[data-aicc="version-row"][data-version="${liveBefore.version}"]`);
      await old.locator('[data-aicc="rollback"]').click();
      await page.locator('[data-aicc="confirm-ok"]').click();
      await page.waitForSelector(`[data-aicc="version-row"][data-version="${liveBefore.version}"][data-state="live"]`, { timeout: 120_000 });
      await ctx.shot(page, "admin-rolled-back");
    }
  } finally {
    // Put back the knowledge that was live before, whatever happened above.
    if (liveBefore) {
      try {
        const now = (await call("GET", "/v1/admin/kb/versions")).versions.find((v) => v.live);
        if (!now || now.version !== liveBefore.version) {
          await call("POST", `/v1/admin/kb/versions/${liveBefore.version}/publish`);
          ctx.log(`rolled back to v${liveBefore.version}${published ? ` (from v${published})` : ""}`);
        }
      } catch (e) {
        ctx.log(`ROLLBACK FAILED: publish v${liveBefore.version} by hand: ${e.message}`);
        throw e;
      }
    }
    await customerCtx?.close().catch(() => {});
    await adminCtx.close().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
