// Talks to the debug API under this page's <base href>, with the bearer token kept in session storage.

const TOKEN_KEY = "otel-rag-debug-token";

export class AuthError extends Error {
  constructor(
    public readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class ApiError extends Error {
  constructor(
    public readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** A shared link's ?token=... goes to session storage and out of the address bar (and the browser history). */
export function captureTokenFromUrl(location: Location = window.location, history: History = window.history): void {
  const url = new URL(location.href);
  const token = url.searchParams.get("token");
  if (token === null) return;
  if (token) setToken(token);
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
}

export async function apiGet<T>(path: string, params: Record<string, string | undefined> = {}): Promise<T> {
  const url = new URL("api/" + path, document.baseURI);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  const token = getToken();
  const response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const reason = body && typeof body === "object" ? (body as { error?: unknown }).error : undefined;
    const message = typeof reason === "string" && reason ? reason : `${response.status} ${response.statusText}`;
    if (response.status === 401 || response.status === 403) throw new AuthError(response.status, message);
    throw new ApiError(response.status, message);
  }
  return body as T;
}
