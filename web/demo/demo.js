// The demo page's suggested questions: a click asks it in the widget
// (window.AICCWidget, which loads async and announces itself with "aicc:ready").
function ask(text) {
  if (window.AICCWidget) window.AICCWidget.send(text);
  else window.addEventListener("aicc:ready", () => window.AICCWidget.send(text), { once: true });
}
document.addEventListener("click", (e) => {
  const button = e.target.closest("[data-ask]");
  if (button) ask(button.dataset.ask);
});
