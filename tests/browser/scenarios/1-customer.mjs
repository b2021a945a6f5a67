// A customer on the company's site (a second origin with hostile CSS) opens
// the widget and asks two Korean questions: an FAQ the demo knowledge answers
// directly (the fast path: no streamed tokens, the FAQ answer with its
// article cited), then a paraphrase that takes the RAG path (the reply streams
// into a provisional bubble that the final message replaces). Along the way:
// the page's CSS does not reach into the widget, the widget does not restyle
// the page, feedback is recorded, and the panel fits a 360 px screen.

// tests/scenarios/demo.json "ko-lost-card": path direct, cites this article.
const FAST_Q = "카드를 잃어버렸어요";
const FAST_ARTICLE = "faq-lost_or_stolen_card-ko";
const FAST_TITLE = "카드를 잃어버렸어요. 도난당한 것 같기도 한데 어떻게 해야 하나요?";
const FAST_ANSWER_START = "앱의 카드 > 분실·도난 신고에서"; // demo/faq.csv, the article's answer
// A paraphrase that lands between the thresholds (direct 0.75, rag 0.40), so
// the generator writes the reply. demo.json's Korean "rag" paraphrases are
// answered directly here (intent agreement lifts them over 0.75); this one was
// measured on the dev server: RAG path, ~36 tokens streamed, the contactless
// article cited (greedy decoding, so the same every run). A failed grounding
// check would still stream first and then fall back to the cited FAQ answer.
const RAG_Q = "마트에서 카드를 댔는데 결제가 안 되고 꽂아야만 돼요";
const RAG_ARTICLES = ["faq-contactless_not_working-ko", "faq-card_not_working-ko"];

const HOSTILE_FONT = "30px";
const RED = "rgb(255, 0, 0)";

/** Computed styles of the page's own elements (not the widget's host). */
function pageLook() {
  const props = ["color", "font-size", "font-family", "line-height", "margin", "padding", "display", "background-color", "box-sizing", "overflow"];
  const els = [document.documentElement, document.body, ...document.body.querySelectorAll("*")].filter((e) => e.localName !== "aicc-chat-widget" && e.localName !== "script").slice(0, 40);
  return {
    els: els.map((e) => e.localName + " " + props.map((p) => getComputedStyle(e).getPropertyValue(p)).join("|")),
    scroll: [document.documentElement.scrollWidth, document.documentElement.scrollHeight],
    sheets: [...document.querySelectorAll('style, link[rel="stylesheet"]')].length,
    adopted: document.adoptedStyleSheets.length,
  };
}

export default async function (ctx) {
  const { expect, log } = ctx;
  let customerCtx = null;
  let bareCtx = null;
  let demoCtx = null;
  let stored = null;
  try {
    // 0. The host page as it looks without the widget (widget.js blocked).
    bareCtx = await ctx.browser.newContext({ locale: "ko-KR", viewport: { width: 1280, height: 800 } });
    const bare = await bareCtx.newPage();
    await bare.route("**/widget.js", (r) => r.abort());
    await bare.goto(ctx.hostUrl);
    const before = await bare.evaluate(pageLook);
    await bareCtx.close();
    bareCtx = null;

    // 1. The customer's browser: globals present before any page script.
    customerCtx = await ctx.browser.newContext({ locale: "ko-KR", viewport: { width: 1280, height: 800 } });
    await customerCtx.addInitScript(() => {
      window.__globalsAtStart = Object.getOwnPropertyNames(window);
    });
    const page = await customerCtx.newPage();
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    // Token frames per customer message they answer (reply_to).
    const tokens = new Map();
    page.on("websocket", (ws) => {
      ws.on("framereceived", ({ payload }) => {
        try {
          const f = JSON.parse(String(payload));
          if (f.type === "token") tokens.set(f.reply_to, (tokens.get(f.reply_to) || 0) + 1);
        } catch {}
      });
    });
    await page.goto(ctx.hostUrl);
    const launcher = page.locator('[data-aicc="launcher"]');
    await launcher.waitFor({ timeout: 30_000 });

    // 2. The widget leaves the page alone: same look, no new sheets, one global.
    const after = await page.evaluate(pageLook);
    expect(JSON.stringify(after.els) === JSON.stringify(before.els), "the widget changed no computed style of the page");
    expect(after.scroll.join() === before.scroll.join(), `the page's scroll size is unchanged: ${before.scroll} → ${after.scroll}`);
    expect(after.sheets === before.sheets && after.adopted === 0, "no style sheets added to the page");
    const globals = await page.evaluate(() => {
      const start = new Set(window.__globalsAtStart);
      return Object.getOwnPropertyNames(window).filter((n) => !start.has(n) && n !== "__globalsAtStart");
    });
    const pageScripts = await page.evaluate(() => document.scripts.length);
    log(`new globals: ${globals.join(", ")} (${pageScripts} script elements)`);
    expect(globals.includes("AICCWidget"), "window.AICCWidget exists");
    if (pageScripts === 1) expect(globals.length === 1, `only one global: ${globals}`);

    // 3. Open it; the input has the focus; the page's CSS did not leak in.
    await launcher.click();
    const input = page.locator('[data-aicc="input"]');
    await input.waitFor();
    const focused = await page.evaluate(() => document.querySelector("aicc-chat-widget")?.shadowRoot?.activeElement?.dataset.aicc);
    expect(focused === "input", `focus is in the input (${focused})`);
    const look = await input.evaluate((e) => ({ font: getComputedStyle(e).fontSize, color: getComputedStyle(e).color }));
    expect(look.font !== HOSTILE_FONT && look.color !== RED, `the input is styled by the widget: ${JSON.stringify(look)}`);
    const logFont = await page.locator('[data-aicc="log"]').evaluate((e) => getComputedStyle(e).fontSize);
    expect(logFont !== HOSTILE_FONT, `the message list's font size is the widget's: ${logFont}`);
    expect(await page.locator('[data-aicc="send"]').isVisible(), "the send button is visible despite button{display:none}");
    expect(await page.locator('[data-aicc="handoff"]').isVisible(), "the handoff button is visible");
    await ctx.shot(page, "customer-open");

    // 4. The fast path: the FAQ answer, cited, not streamed.
    await input.fill(FAST_Q);
    await input.press("Enter");
    const mine = page.locator('[data-aicc="msg"][data-sender="customer"]', { hasText: FAST_Q });
    await mine.waitFor();
    const firstBot = page.locator('[data-aicc="msg"][data-sender="bot"][data-state="final"]').first();
    await firstBot.waitFor({ timeout: 30_000 });
    await page.locator('[data-aicc="msg"][data-sender="customer"][data-state="sent"][data-id]', { hasText: FAST_Q }).waitFor();
    const fastText = await firstBot.locator(".bubble").textContent();
    log(`fast answer: ${fastText.slice(0, 80)}…`);
    expect(fastText.startsWith(FAST_ANSWER_START), `the FAQ answer itself: ${fastText.slice(0, 40)}`);
    const sources = firstBot.locator('[data-aicc="sources"]');
    await sources.locator("summary").click();
    const cited = await sources.locator("li").evaluateAll((lis) => lis.map((li) => [li.dataset.articleId, li.textContent]));
    expect(cited.some(([id, title]) => id === FAST_ARTICLE && title === FAST_TITLE), `the sources list cites ${FAST_ARTICLE}: ${JSON.stringify(cited)}`);
    expect((await sources.locator("summary").textContent()).includes(String(cited.length)), "the sources summary counts them");
    stored = await page.evaluate(() => JSON.parse(localStorage.getItem(window.AICCWidget.storageKey) || "null"));
    expect(stored?.conversation_id && stored?.token, "the conversation is kept in localStorage");
    const fastMsgId = await mine.first().getAttribute("data-id");
    expect(!tokens.get(fastMsgId), `no tokens streamed for the direct answer (${tokens.get(fastMsgId) || 0})`);
    log(`conversation ${stored.conversation_id}`);
    await ctx.shot(page, "customer-fast-answer");

    // 5. Thumbs up on it is recorded once.
    await firstBot.locator('[data-aicc="thumb-up"]').click();
    await firstBot.locator('[data-aicc="thumb-up"][aria-pressed="true"]').waitFor({ timeout: 10_000 });
    expect(await firstBot.locator('[data-aicc="thumb-down"]').isDisabled(), "feedback is given once");

    // 6. The RAG path: watch the widget's log for the preview growing.
    await page.evaluate(() => {
      const root = document.querySelector("aicc-chat-widget").shadowRoot;
      const seen = (window.__rag = { previews: [], typing: false, finalAfterPreview: false });
      new MutationObserver(() => {
        const p = root.querySelector('[data-aicc="msg"][data-state="preview"]');
        if (p) {
          const n = p.textContent.length;
          if (seen.previews[seen.previews.length - 1] !== n) seen.previews.push(n);
        }
        if (!root.querySelector('[data-aicc="typing"]').hidden) seen.typing = true;
        const finals = root.querySelectorAll('[data-aicc="msg"][data-sender="bot"][data-state="final"]').length;
        if (finals >= 2 && seen.previews.length) seen.finalAfterPreview = seen.finalAfterPreview || !p;
      }).observe(root, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    await input.fill(RAG_Q);
    await page.locator('[data-aicc="send"]').click();
    const preview = page.locator('[data-aicc="msg"][data-sender="bot"][data-state="preview"]');
    await preview.waitFor({ timeout: 60_000 });
    await page.waitForFunction(() => window.__rag.previews.length >= 3, null, { timeout: 60_000 });
    await ctx.shot(page, "customer-rag-streaming");
    const finalBot = page.locator('[data-aicc="msg"][data-sender="bot"][data-state="final"]').nth(1);
    await finalBot.waitFor({ timeout: 120_000 });
    const rag = await page.evaluate(() => window.__rag);
    log(`preview lengths: ${rag.previews.join(" ")}; typing shown: ${rag.typing}`);
    expect(rag.previews.length >= 3 && rag.previews.every((n, i) => i === 0 || n > rag.previews[i - 1]), "the preview grew token by token");
    expect(rag.typing, "the typing indicator showed while the bot worked");
    expect(rag.finalAfterPreview && (await preview.count()) === 0, "the final message replaced the preview");
    const ragMsgId = await page.locator('[data-aicc="msg"][data-sender="customer"]', { hasText: RAG_Q }).getAttribute("data-id");
    expect(tokens.get(ragMsgId) > 1, `tokens streamed for the RAG reply (${tokens.get(ragMsgId)})`);
    const ragText = await finalBot.locator(".bubble").textContent();
    const ragCites = await finalBot.locator('[data-aicc="sources"] li').evaluateAll((lis) => lis.map((li) => li.dataset.articleId));
    log(`rag answer: ${ragText.slice(0, 100)}… cites ${ragCites}`);
    expect(ragCites.some((id) => RAG_ARTICLES.includes(id)), `the RAG reply cites the contactless article: ${ragCites}`);
    expect(await page.locator('[data-aicc="typing"]').isHidden(), "the typing indicator is gone");
    await ctx.shot(page, "customer-rag-final");

    // 7. One message each, in order, no duplicates.
    const seqs = await page.locator('[data-aicc="msg"][data-seq]').evaluateAll((els) => els.map((e) => +e.dataset.seq));
    expect(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), `messages in seq order, once each: ${seqs}`);

    // 8. A 360 px phone: the panel fills the screen, the composer is usable.
    await page.setViewportSize({ width: 360, height: 740 });
    const box = await page.locator('[data-aicc="panel"]').boundingBox();
    expect(box && Math.round(box.width) === 360 && box.x === 0, `the panel is full width at 360 px: ${JSON.stringify(box)}`);
    const sendBox = await page.locator('[data-aicc="send"]').boundingBox();
    expect(sendBox && sendBox.x + sendBox.width <= 360 && sendBox.y + sendBox.height <= 740, "the send button is on screen");
    await ctx.shot(page, "customer-360px");

    // 9. Esc closes, focus returns to the launcher.
    await input.press("Escape");
    expect(await page.locator('[data-aicc="panel"]').isHidden(), "Esc closes the panel");
    expect(pageErrors.length === 0, `no page errors: ${pageErrors.join("; ")}`);

    // 10. The demo page at / (what a newcomer sees after `aicc serve`): a
    // suggested question asks the widget, which answers with its source.
    demoCtx = await ctx.browser.newContext({ locale: "ko-KR", viewport: { width: 1280, height: 800 } });
    const demo = await demoCtx.newPage();
    await demo.goto(`${ctx.aiccUrl}/`);
    await demo.locator(`button[data-ask="${FAST_Q}"]`).click();
    const demoAnswer = demo.locator('[data-aicc="msg"][data-sender="bot"]:not([data-state="preview"])', { hasText: FAST_ANSWER_START });
    await demoAnswer.waitFor({ timeout: 30_000 });
    await demo.locator('[data-aicc="sources"]').last().locator("summary").click().catch(() => {});
    await ctx.shot(demo, "demo-page");
  } finally {
    await demoCtx?.close().catch(() => {});
    if (stored?.conversation_id) {
      await ctx.api
        .req("POST", `/v1/conversations/${stored.conversation_id}/close`, { token: stored.token })
        .catch((e) => log(`could not close ${stored.conversation_id}: ${e.message}`));
    }
    await bareCtx?.close().catch(() => {});
    await customerCtx?.close().catch(() => {});
  }
}
