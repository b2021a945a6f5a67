// Handoff end to end: an admin creates an agent (a unique one per run); the
// agent signs in to /agent/; a customer on another origin asks the widget for a
// human; the request shows up in the agent's queue live (no reload); the agent
// claims it, finds a drafted reply in the assist panel and sends it with one
// click; the customer sees that reply in the widget with the agent's name.
// Automatic assignment would hand the conversation to whichever agent is
// online, so the scenario switches the tenant to manual assignment if needed
// and puts the settings back in `finally` (with the test agent and the
// conversation cleaned up too).

import { openWidget, ask } from "../widget.mjs";

const ASK_HUMAN = "상담원 연결해 주세요";
// Said while waiting, as customers do: a question the demo knowledge answers,
// so the assist panel has a grounded draft to offer.
const WHILE_WAITING = "카드를 신청했는데 아직도 안 왔어요. 어디쯤 오고 있나요?";

/** Admin REST calls for the setup and the clean-up (ctx.api throws on an error status). */
async function adminRest(ctx) {
  const token = await ctx.api.login();
  return (method, path, json) => ctx.api.req(method, path, { token, json });
}

export default async function (ctx) {
  const { expect, log } = ctx;
  const call = await adminRest(ctx);
  const stamp = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const agent = { email: `handoff-${stamp}@example.test`, password: `handoff-${stamp}-pw`, name: `Agent ${stamp.slice(-5)}` };

  const before = await call("GET", "/v1/admin/settings");
  let restore = null;
  let agentId = null;
  let conversationId = null;
  let agentCtx = null;
  let customerCtx = null;
  try {
    // 0. Manual assignment, so no other online agent is handed our customer.
    //    (Business hours only change what the customer is told, not the flow.)
    if (before.assignment !== "manual") {
      restore = before;
      await call("PUT", "/v1/admin/settings", { ...before, assignment: "manual" });
      log(`assignment was ${before.assignment}: manual for this scenario`);
    }
    const created = await call("POST", "/v1/admin/users", { email: agent.email, role: "agent", name: agent.name, password: agent.password });
    agentId = created.user.id;
    log(`agent ${agent.name} <${agent.email}>`);

    // 1. The agent signs in.
    agentCtx = await ctx.browser.newContext({ locale: "ko-KR", viewport: { width: 1366, height: 900 } });
    const page = await agentCtx.newPage();
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    await page.goto(new URL("/agent/", ctx.aiccUrl).href);
    await page.waitForSelector('[data-aicc="login-email"]');
    expect((await page.inputValue('[data-aicc="login-tenant"]')) === "demo", "the tenant field defaults to demo");
    await page.fill('[data-aicc="login-tenant"]', ctx.tenant);
    await page.fill('[data-aicc="login-email"]', agent.email);
    await page.fill('[data-aicc="login-password"]', agent.password);
    await page.click('[data-aicc="login-submit"]');
    await page.waitForSelector('[data-aicc="link-status"][data-state="open"]', { timeout: 30_000 });
    await page.waitForSelector('[data-aicc="queue-waiting"]');
    await ctx.shot(page, "agent-queue");

    // 2. A customer on the host site asks for a human.
    customerCtx = await ctx.browser.newContext({ locale: "ko-KR", viewport: { width: 420, height: 800 } });
    const host = await customerCtx.newPage();
    host.on("response", async (r) => {
      if (r.request().method() === "POST" && /\/v1\/widget\/[^/]+\/conversations$/.test(new URL(r.url()).pathname) && r.ok()) {
        conversationId = (await r.json().catch(() => ({}))).conversation_id || conversationId;
      }
    });
    await openWidget(host, ctx.hostUrl);
    await ask(host, ASK_HUMAN);
    for (let i = 0; i < 300 && !conversationId; i++) await host.waitForTimeout(100);
    expect(conversationId, "the widget started a conversation");
    log(`conversation ${conversationId}`);

    // 3. It shows up in the agent's queue by itself.
    const item = page.locator(`[data-aicc="queue-item"][data-conversation-id="${conversationId}"][data-status="queued"]`);
    await item.waitFor({ timeout: 60_000 });
    // The customer explains while waiting; the queue preview follows live.
    await ask(host, WHILE_WAITING);
    await item.locator(".preview", { hasText: WHILE_WAITING.slice(0, 10) }).waitFor({ timeout: 30_000 });
    const waited = await item.locator('[data-aicc="queue-wait"]').textContent();
    expect(/\d/.test(waited), `the queue shows the waiting time: ${waited}`);
    await ctx.shot(page, "agent-queue-live");
    await ctx.shot(host, "widget-waiting");
    log(`queue item: ${(await item.textContent()).replace(/\s+/g, " ")}`);

    // 4. Claim; the conversation opens as a tab of mine.
    await item.locator('[data-aicc="claim"]').click();
    const view = page.locator(`[data-aicc="conversation"][data-conversation-id="${conversationId}"]`);
    await view.locator('[data-aicc="conv-status"][data-status="assigned"]').waitFor({ timeout: 30_000 });
    await page.locator(`[data-aicc="tab"][data-conversation-id="${conversationId}"][aria-selected="true"]`).waitFor();
    await page.locator(`[data-aicc="queue-mine"] [data-aicc="queue-item"][data-conversation-id="${conversationId}"]`).waitFor({ timeout: 30_000 });
    await view.locator('[data-aicc="message"][data-sender="customer"]', { hasText: ASK_HUMAN }).first().waitFor();

    // 5. The assist panel: intent, knowledge hits, summary and a drafted reply
    //    (settled: frames computed in the background are checked by a GET).
    const panel = `[data-aicc="conversation"][data-conversation-id="${conversationId}"] [data-aicc="assist"]`;
    await page.waitForFunction(
      (sel) => {
        const p = document.querySelector(sel);
        return p?.dataset.state === "ready" && p.querySelector('[data-aicc="assist-draft"]')?.value.trim().length > 0;
      },
      panel,
      { timeout: 60_000 },
    );
    const hits = await view.locator('[data-aicc="assist-hit"]').count();
    const summary = (await view.locator('[data-aicc="assist-summary"]').textContent()).replace(/\s+/g, " ");
    const intent = await view.locator('[data-aicc="assist-intent"]').textContent();
    expect(hits > 0, "the assist panel lists knowledge hits");
    expect(summary.includes(ASK_HUMAN) || summary.includes(WHILE_WAITING.slice(0, 10)), `the summary quotes the customer: ${summary}`);
    expect(/봇이|상담원|답하세요/.test(summary) && !/Bot answered|Bot handed over|Claim the conversation|Answer “/.test(summary),
      `the summary speaks the dashboard's language (Korean): ${summary}`);
    await ctx.shot(page, "agent-assist");

    // 6. One click sends the draft as the agent (read and clicked together, so
    //    a late assist update cannot swap the text in between).
    const draft = await page.evaluate((sel) => {
      const p = document.querySelector(sel);
      const text = p.querySelector('[data-aicc="assist-draft"]').value.trim();
      p.querySelector('[data-aicc="assist-send-draft"]').click();
      return text;
    }, panel);
    log(`assist: intent=${intent} hits=${hits} sent draft: ${draft.slice(0, 60)}…`);
    const sent = view.locator('[data-aicc="message"][data-sender="agent"]').last();
    await sent.waitFor({ timeout: 30_000 });
    expect((await sent.textContent()).includes(draft.slice(0, 20)), "the dashboard shows the sent draft");
    expect((await view.locator('[data-aicc="message-pending"]').count()) === 0, "the sent draft was acknowledged");

    // 7. The customer sees it, with the agent's name.
    const reply = host.locator('[data-aicc="msg"][data-sender="agent"]').last();
    await reply.waitFor({ timeout: 30_000 });
    const replyText = await reply.textContent();
    expect(replyText.includes(draft.slice(0, 20)), `the widget shows the agent's reply: ${replyText}`);
    const widgetText = await host.locator('[data-aicc="log"]').textContent();
    const statusText = (await host.locator('[data-aicc="status"]').textContent().catch(() => "")) || "";
    expect(replyText.includes(agent.name) || widgetText.includes(agent.name) || statusText.includes(agent.name), "the widget names the agent");
    await ctx.shot(host, "widget-agent-reply");
    await ctx.shot(page, "agent-replied");

    // 8. The agent closes the conversation (two steps: close, confirm).
    await view.locator('[data-aicc="close"]').click();
    await view.locator('[data-aicc="confirm"]').click();
    await view.locator('[data-aicc="conv-status"][data-status="closed"]').waitFor({ timeout: 30_000 });
    expect(pageErrors.length === 0, `no errors on the dashboard: ${pageErrors.join("; ")}`);
  } finally {
    if (conversationId) {
      try {
        const { conversation } = await call("GET", `/v1/conversations/${conversationId}`);
        if (conversation.status !== "closed") await call("POST", `/v1/conversations/${conversationId}/close`);
      } catch (e) {
        log(`could not close ${conversationId}: ${e.message}`);
      }
    }
    await customerCtx?.close().catch(() => {});
    await agentCtx?.close().catch(() => {});
    if (agentId) await call("DELETE", `/v1/admin/users/${agentId}`).catch((e) => log(`test agent left behind: ${e.message}`));
    if (restore) {
      try {
        // Only the field we changed: whatever else changed meanwhile stays.
        const now = await call("GET", "/v1/admin/settings");
        await call("PUT", "/v1/admin/settings", { ...now, assignment: restore.assignment });
        log(`assignment restored to ${restore.assignment}`);
      } catch (e) {
        log(`SETTINGS NOT RESTORED: put assignment back to ${restore.assignment} by hand: ${e.message}`);
        throw e;
      }
    }
  }
}
