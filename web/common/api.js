// REST client and staff session for the agent dashboard and the admin console.
// Same origin as the API, Bearer tokens (no cookies), errors as ApiError with
// the contract's {code, message, details}.

const SESSION_KEY = "aicc:session";

/** An error answer from the API (or the network), with the contract's fields. */
export class ApiError extends Error {
  constructor(status, code, message, details = [], retryAfter = null) {
    super(message);
    this.status = status; // 0 when the server could not be reached
    this.code = code;
    this.details = details; // e.g. [{line, message}] for a rejected import
    this.retryAfter = retryAfter; // seconds, from Retry-After on 429
  }
}

/** The signed-in staff member: {token, user:{id, tenant, role, name}, expiresAt}. */
export function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    if (s && s.expiresAt > Date.now()) return s;
  } catch { /* a corrupt entry is the same as none */ }
  sessionStorage.removeItem(SESSION_KEY);
  return null;
}

export function saveSession(s) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
}

export function clearSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

export class Api {
  /** `onUnauthorized` runs when a call comes back 401 (expired token). */
  constructor({ base = location.origin, token = null, onUnauthorized = null } = {}) {
    this.base = base;
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  /** Logs in and returns the session (also stored for this tab). */
  async login(tenant, email, password) {
    const r = await this.request("POST", "/v1/auth/login", { json: { tenant, email, password }, auth: false });
    const session = { token: r.access_token, user: r.user, expiresAt: Date.now() + r.expires_in * 1000 };
    this.token = session.token;
    saveSession(session);
    return session;
  }

  /**
   * One call. `json` sends JSON; `body` + `contentType` send raw content (a CSV
   * file, say); `query` is an object of search parameters (undefined/null left
   * out). Returns the parsed JSON body (null for an empty one).
   */
  async request(method, path, { json, body, contentType, query, auth = true, signal } = {}) {
    const url = new URL(path, this.base);
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
    }
    const headers = {};
    if (auth && this.token) headers.Authorization = `Bearer ${this.token}`;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (contentType) {
      headers["Content-Type"] = contentType;
    }
    let res;
    try {
      res = await fetch(url, { method, headers, body, signal });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(0, "network_error", "The server could not be reached. Check the connection and try again.");
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
    if (!res.ok) {
      const err = data && data.error;
      const retry = res.headers.get("Retry-After");
      const e = new ApiError(
        res.status,
        err?.code || `http_${res.status}`,
        err?.message || `${res.status} ${res.statusText}`,
        err?.details || [],
        retry ? Number(retry) : null,
      );
      if (res.status === 401 && auth && this.onUnauthorized) this.onUnauthorized(e);
      throw e;
    }
    return data;
  }

  get(path, query) { return this.request("GET", path, { query }); }
  post(path, json) { return this.request("POST", path, { json: json ?? {} }); }
  put(path, json) { return this.request("PUT", path, { json }); }
  del(path) { return this.request("DELETE", path); }
}

/** A UUID v4 for client_msg_id (randomUUID needs a secure context). */
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
