// Korean and English UI strings: each page passes its own dictionary
// {en: {key: text}, ko: {key: text}}; `{name}` placeholders are filled from vars.

export function detectLocale(explicit) {
  const wanted = explicit || localStorage.getItem("aicc:locale") || navigator.language || "en";
  return wanted.toLowerCase().startsWith("ko") ? "ko" : "en";
}

export function makeT(dict, locale) {
  return (key, vars = {}) => {
    const text = dict[locale]?.[key] ?? dict.en?.[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
  };
}

/** "3 min" / "3분" style durations for waiting times. */
export function formatDuration(ms, locale) {
  const s = Math.max(0, Math.round(ms / 1000));
  const ko = locale === "ko";
  if (s < 60) return ko ? `${s}초` : `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return ko ? `${m}분` : `${m} min`;
  const h = Math.floor(m / 60);
  return ko ? `${h}시간 ${m % 60}분` : `${h} h ${m % 60} min`;
}

export function formatTime(iso, locale) {
  return new Date(iso).toLocaleTimeString(locale === "ko" ? "ko-KR" : "en-GB", { hour: "2-digit", minute: "2-digit" });
}
