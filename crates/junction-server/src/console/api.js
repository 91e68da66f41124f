// The admin API client. The token lives in this tab's sessionStorage (never in the page)
// and goes with every call as `Authorization: Bearer`. Errors arrive as RFC 9457
// problem+json and become ApiError.

const TOKEN_KEY = 'junction.admin-token';

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A failed call: the HTTP status and the problem document (or the text) it answered. */
export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem && typeof problem === 'object' ? problem.detail || problem.title : problem;
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem && typeof problem === 'object' ? problem : null;
  }

  /** The message and each listed violation, one per line. */
  describe() {
    const lines = [this.message];
    for (const v of this.problem?.errors ?? []) {
      const where = [v.in, v.name].filter(Boolean).join(' ');
      lines.push(where ? `${where}: ${v.message}` : v.message);
    }
    return lines.join('\n');
  }
}

/**
 * Calls `/api/v1{path}`. `token` overrides the stored one (to check a token before
 * keeping it). Answers the parsed JSON, or null for 204.
 */
export async function api(path, { method = 'GET', body, token } = {}) {
  const headers = { Accept: 'application/json', 'X-Junction-Actor': 'console' };
  const bearer = token ?? storedToken();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`/api/v1${path}`, init);
  if (response.status === 204) return null;
  const text = await response.text();
  let data = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: keep the text.
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** `encodeURIComponent` for path segments. */
export const seg = encodeURIComponent;
