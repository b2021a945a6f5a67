// The admin console: login, the section navigation (hash routes such as
// #/kb or #/search?version=3), the KO/EN switch, and the shared context each
// section module renders with.

import { Api, loadSession, clearSession } from "../common/api.js";
import { detectLocale, makeT } from "../common/i18n.js";
import { h, replace } from "../common/dom.js";
import { STRINGS } from "./strings.js";
import { errorBox } from "./ui.js";
import * as kb from "./kb.js";
import * as search from "./search.js";
import * as intents from "./intents.js";
import * as analytics from "./analytics.js";
import * as users from "./users.js";
import * as canned from "./canned.js";
import * as settings from "./settings.js";

const SECTIONS = [
  ["kb", kb], ["search", search], ["intents", intents], ["analytics", analytics],
  ["users", users], ["canned", canned], ["settings", settings],
];
const DEFAULT_ROUTE = "kb";

const app = document.getElementById("app");
const state = { locale: detectLocale(), session: null, api: null, cleanup: null, loginMessage: null, openapi: null, renderSeq: 0 };
let t = makeT(STRINGS, state.locale);

function setLocale(locale) {
  state.locale = locale;
  localStorage.setItem("aicc:locale", locale);
  t = makeT(STRINGS, locale);
  document.documentElement.lang = locale;
  document.title = t("app.title");
  if (state.session) renderShell();
  else renderLogin();
}

function localeSwitch() {
  const other = state.locale === "ko" ? "en" : "ko";
  return h("button", {
    type: "button", class: "locale", "data-aicc": "locale-switch", lang: other,
    "aria-label": t("app.switchLocale"), onclick: () => setLocale(other),
  }, other === "ko" ? "한국어" : "English");
}

// ---- login -------------------------------------------------------------

function renderLogin() {
  runCleanup();
  const tenant = h("input", { id: "login-tenant", name: "tenant", value: localStorage.getItem("aicc:tenant") || "demo", required: true, autocomplete: "organization", "data-aicc": "login-tenant" });
  const email = h("input", { id: "login-email", name: "email", type: "email", required: true, autocomplete: "username", "data-aicc": "login-email" });
  const password = h("input", { id: "login-password", name: "password", type: "password", required: true, autocomplete: "current-password", "data-aicc": "login-password" });
  const submit = h("button", { type: "submit", class: "primary", "data-aicc": "login-submit" }, t("login.submit"));
  const message = h("p", { class: "error", role: "alert", "data-aicc": "login-error", hidden: !state.loginMessage }, state.loginMessage || "");
  const form = h("form", { class: "login panel", "data-aicc": "login-form", novalidate: false },
    h("div", { class: "login-head" }, h("h1", {}, t("app.title")), localeSwitch()),
    h("p", { class: "muted" }, t("login.intro")),
    h("div", {}, h("label", { for: tenant.id }, t("login.tenant")), tenant),
    h("div", {}, h("label", { for: email.id }, t("login.email")), email),
    h("div", {}, h("label", { for: password.id }, t("login.password")), password),
    message, submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    message.hidden = true;
    submit.disabled = true;
    try {
      const api = new Api({ onUnauthorized: onUnauthorized });
      const session = await api.login(tenant.value.trim(), email.value.trim(), password.value);
      if (session.user.role !== "admin") {
        clearSession();
        throw new Error(t("login.adminsOnly"));
      }
      localStorage.setItem("aicc:tenant", tenant.value.trim());
      state.loginMessage = null;
      start(session, api);
    } catch (e) {
      message.textContent = e.code === "invalid_credentials" ? t("login.invalid") : e.message;
      message.hidden = false;
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  replace(app, h("main", { class: "login-page" }, form));
  (email.value ? password : tenant.value ? email : tenant).focus();
}

function onUnauthorized() {
  if (!state.session) return;
  logout(t("login.expired"));
}

function logout(message = null) {
  clearSession();
  state.session = null;
  state.api = null;
  state.loginMessage = message;
  renderLogin();
}

// ---- the console ---------------------------------------------------------

function start(session, api) {
  state.session = session;
  state.api = api || new Api({ token: session.token, onUnauthorized });
  if (!location.hash || location.hash === "#" || location.hash === "#/") history.replaceState(null, "", `#/${DEFAULT_ROUTE}`);
  renderShell();
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const id = SECTIONS.some(([s]) => s === path) ? path : DEFAULT_ROUTE;
  return { id, params: new URLSearchParams(query) };
}

function renderShell() {
  const { id } = parseHash();
  const nav = h("nav", { class: "sections", "aria-label": t("app.sections") },
    h("ul", {}, SECTIONS.map(([s]) => h("li", {}, h("a", {
      href: `#/${s}`, "data-aicc": `nav-${s}`, "aria-current": s === id ? "page" : null,
    }, t(`nav.${s}`))))));
  const who = state.session.user;
  const header = h("header", { class: "topbar" },
    h("h1", {}, t("app.title")),
    h("span", { class: "spacer" }),
    h("span", { class: "who", "data-aicc": "whoami" }, `${who.name} · ${who.tenant}`),
    localeSwitch(),
    h("button", { type: "button", "data-aicc": "logout", onclick: () => logout() }, t("app.logout")));
  const view = h("main", { id: "view", tabindex: "-1", "data-aicc": "view" });
  replace(app, h("a", { class: "skip", href: "#view", onclick: (e) => { e.preventDefault(); view.focus(); } }, t("app.skip")), header, nav, view);
  showActiveTab();
  renderSection(view);
}

/** On a narrow screen the tabs scroll sideways: keep the current one in view. */
function showActiveTab() {
  document.querySelector("nav.sections a[aria-current]")?.scrollIntoView({ block: "nearest", inline: "nearest" });
}

function runCleanup() {
  if (state.cleanup) {
    try { state.cleanup(); } catch { /* a section's teardown must not block navigation */ }
    state.cleanup = null;
  }
}

async function renderSection(view) {
  runCleanup();
  const { id, params } = parseHash();
  const module = SECTIONS.find(([s]) => s === id)[1];
  const seq = ++state.renderSeq;
  document.title = `${t(`nav.${id}`)} · ${t("app.title")}`;
  const ctx = {
    api: state.api, t, locale: state.locale, view, params, session: state.session,
    go: (hash) => { location.hash = hash; },
    openapi: loadOpenApi,
    // Whether this render is still the current one (a slow call must not paint over a newer section).
    current: () => seq === state.renderSeq,
  };
  replace(view, h("p", { class: "muted" }, t("common.loading")));
  try {
    const cleanup = await module.render(ctx);
    if (seq === state.renderSeq) state.cleanup = typeof cleanup === "function" ? cleanup : null;
    else if (typeof cleanup === "function") cleanup();
  } catch (e) {
    if (e.status === 401 || seq !== state.renderSeq) return;
    replace(view, h("h2", {}, t(`nav.${id}`)), errorBox(t, e));
  }
}

/** The server's OpenAPI document, once: tells which optional routes exist. */
async function loadOpenApi() {
  if (!state.openapi) state.openapi = state.api.request("GET", "/v1/openapi.json", { auth: false }).catch((e) => { state.openapi = null; throw e; });
  return state.openapi;
}

window.addEventListener("hashchange", () => {
  if (!state.session) return;
  const { id } = parseHash();
  // Highlight the active link, then render the section.
  for (const a of document.querySelectorAll("nav.sections a")) {
    if (a.getAttribute("href") === `#/${id}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  showActiveTab();
  const view = document.getElementById("view");
  if (view) {
    renderSection(view);
    view.focus({ preventScroll: true });
  }
});

document.documentElement.lang = state.locale;
document.title = t("app.title");
const saved = loadSession();
if (saved && saved.user.role === "admin") start(saved);
else renderLogin();
