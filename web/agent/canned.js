// The canned-response picker: a searchable list (GET /v1/admin/canned, which
// agents may read) that inserts the chosen text into the composer.

import { h, replace } from "../common/dom.js";
import { errorText } from "./ui.js";

export class CannedPicker {
  /** `onPick(text)` inserts; `onClose()` returns focus to the composer. */
  constructor(app, { onPick, onClose }) {
    this.app = app;
    this.onPick = onPick;
    this.onClose = onClose;
    this.root = h("div", { class: "canned-picker", role: "dialog", "aria-modal": "false", "data-aicc": "canned-picker", hidden: true });
    this.root.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.stopPropagation();
        this.close();
      }
    });
  }

  get isOpen() {
    return !this.root.hidden;
  }

  async open() {
    const { t } = this.app;
    this.root.hidden = false;
    const searchId = `canned-q-${Math.random().toString(36).slice(2, 8)}`;
    this.search = h("input", { type: "search", id: searchId, "data-aicc": "canned-search", autocomplete: "off" });
    this.list = h("ul", { class: "canned-list", "data-aicc": "canned-list" }, h("li", { class: "muted" }, t("loading")));
    this.search.addEventListener("input", () => this.#filter());
    this.search.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        this.list.querySelector("button")?.click();
      } else if (e.key === "ArrowDown") {
        e.preventDefault();
        this.list.querySelector("button")?.focus();
      }
    });
    replace(
      this.root,
      h("div", { class: "row" },
        h("label", { for: searchId, class: "grow" }, t("canned_title")),
        h("button", { type: "button", class: "link", onclick: () => this.close() }, t("close_picker"))),
      this.search,
      this.list,
    );
    this.search.setAttribute("placeholder", t("canned_search"));
    this.search.setAttribute("aria-label", t("canned_search"));
    this.search.focus();
    try {
      this.items = await this.app.loadCanned();
      this.#filter();
    } catch (e) {
      replace(this.list, h("li", { class: "error" }, t("canned_failed", { message: errorText(e) })));
    }
  }

  close() {
    if (!this.isOpen) return;
    this.root.hidden = true;
    replace(this.root);
    this.onClose();
  }

  #filter() {
    const { t, locale } = this.app;
    if (!this.items) return;
    const q = this.search.value.trim().toLowerCase();
    const matches = this.items
      .filter((c) => !q || c.title.toLowerCase().includes(q) || c.text.toLowerCase().includes(q))
      // The agent's language first, then by title.
      .sort((a, b) => (a.language === locale ? 0 : 1) - (b.language === locale ? 0 : 1) || a.title.localeCompare(b.title));
    if (!this.items.length) return replace(this.list, h("li", { class: "muted" }, t("canned_none")));
    if (!matches.length) return replace(this.list, h("li", { class: "muted" }, t("canned_empty")));
    replace(
      this.list,
      matches.map((c) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: "canned-item",
              "data-aicc": "canned-item",
              "data-canned-id": c.id,
              onclick: () => {
                this.close();
                this.onPick(c.text);
              },
              onkeydown: (e) => this.#arrows(e),
            },
            h("strong", {}, c.title),
            h("span", { class: "tag" }, c.language),
            h("span", { class: "muted preview" }, c.text),
          ),
        ),
      ),
    );
  }

  #arrows(e) {
    const buttons = [...this.list.querySelectorAll("button")];
    const i = buttons.indexOf(e.currentTarget);
    if (e.key === "ArrowDown") buttons[i + 1]?.focus();
    else if (e.key === "ArrowUp") (buttons[i - 1] || this.search).focus();
    else return;
    e.preventDefault();
  }
}
