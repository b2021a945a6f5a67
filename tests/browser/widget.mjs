// What every scenario does with the widget on the customer's site.

/** Opens the host page and the widget panel; returns the message input. */
export async function openWidget(page, hostUrl) {
  await page.goto(hostUrl);
  const launcher = page.locator('[data-aicc="launcher"]');
  await launcher.waitFor({ timeout: 30_000 });
  await launcher.click();
  const input = page.locator('[data-aicc="input"]');
  await input.waitFor();
  return input;
}

/** Types `text` into the widget and sends it. */
export async function ask(page, text) {
  await page.locator('[data-aicc="input"]').fill(text);
  await page.locator('[data-aicc="send"]').click();
}
