// Runs the browser scenarios (scenarios/*.mjs, in name order) in Debian's
// Chromium against a running AICC server. tests/it/browser.rs starts the
// server and calls this; by hand:
//   AICC_URL=http://127.0.0.1:8080 ADMIN_EMAIL=… ADMIN_PASSWORD=… node tests/browser/run.mjs [--only NAME…]
// The customer's site is served here on a second origin (another port), so
// CORS and the widget's Shadow DOM isolation are tested for real.
// Screenshots go to $SHOTS_DIR (default tests/browser/screenshots, not in git).

import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { readFile, readdir, mkdir, rm } from "node:fs/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const aiccUrl = env("AICC_URL").replace(/\/$/, "");
const tenant = env("TENANT", "demo");
const admin = { email: env("ADMIN_EMAIL"), password: env("ADMIN_PASSWORD") };
const shotsDir = path.resolve(env("SHOTS_DIR", path.join(here, "screenshots")));
const only = process.argv.includes("--only") ? process.argv.slice(process.argv.indexOf("--only") + 1) : [];

/** The second origin: the host page with the widget's tag pointing at AICC. */
async function startHostSite() {
  const page = (await readFile(path.join(here, "host.html"), "utf8"))
    .replaceAll("{{AICC_URL}}", aiccUrl)
    .replaceAll("{{TENANT}}", tenant);
  const server = createServer((req, res) => {
    if (req.url === "/" || req.url.startsWith("/?")) {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(page);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

/** A small REST client for setting things up from the test side. */
const api = {
  token: null,
  async login() {
    if (!this.token) {
      const r = await this.req("POST", "/v1/auth/login", { json: { tenant, ...admin } });
      this.token = r.access_token;
    }
    return this.token;
  },
  async req(method, p, { token, json, body, contentType } = {}) {
    const headers = {};
    const auth = token ?? this.token;
    if (auth) headers.authorization = `Bearer ${auth}`;
    if (json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(json);
    } else if (contentType) headers["content-type"] = contentType;
    const res = await fetch(aiccUrl + p, { method, headers, body });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) {
      const e = new Error(`${method} ${p} → ${res.status} ${text}`);
      e.status = res.status;
      e.body = data;
      throw e;
    }
    return data;
  },
};

function expect(cond, message) {
  if (!cond) throw new Error(`expectation failed: ${message}`);
}

async function main() {
  await rm(shotsDir, { recursive: true, force: true });
  await mkdir(shotsDir, { recursive: true });
  const host = await startHostSite();
  const browser = await chromium.launch({
    executablePath: env("CHROMIUM", "/usr/bin/chromium"),
    headless: true,
    // Without the background-networking flags Chromium keeps dialling out,
    // which this closed network refuses.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
  const files = (await readdir(path.join(here, "scenarios"))).filter((f) => f.endsWith(".mjs")).sort();
  const results = [];
  try {
    for (const file of files) {
      const name = file.replace(/\.mjs$/, "");
      if (only.length && !only.includes(name)) continue;
      const started = Date.now();
      let n = 0;
      const ctx = {
        browser, aiccUrl, hostUrl: host.url, tenant, admin, api, expect,
        log: (...a) => console.error(`[${name}]`, ...a),
        shot: async (page, label) => {
          n += 1;
          const file = path.join(shotsDir, `${name}-${String(n).padStart(2, "0")}-${label}.png`);
          await page.screenshot({ path: file, fullPage: false });
          return file;
        },
      };
      console.error(`--- ${name}`);
      try {
        const mod = await import(pathToFileURL(path.join(here, "scenarios", file)).href);
        await mod.default(ctx);
        results.push({ name, ok: true, seconds: (Date.now() - started) / 1000 });
        console.error(`--- ${name}: passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      } catch (e) {
        results.push({ name, ok: false, seconds: (Date.now() - started) / 1000, error: String(e?.stack || e) });
        console.error(`--- ${name}: FAILED\n${e?.stack || e}`);
      }
    }
  } finally {
    await browser.close();
    host.server.close();
  }
  console.log(JSON.stringify({ screenshots: shotsDir, results }));
  if (!results.length) {
    console.error("no scenario ran");
    process.exit(1);
  }
  process.exit(results.every((r) => r.ok) ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
