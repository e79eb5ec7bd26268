import { AuthError, apiGet, captureTokenFromUrl, clearToken, getToken, setToken } from "./api";
import { refusal, routeOf } from "./App";

describe("routes", () => {
  it("read the page below the base, wherever the router is mounted", () => {
    expect(routeOf("/debug/", "http://h/debug/")).toEqual({ page: "home" });
    expect(routeOf("/ops/debug/trace/abc", "http://h/ops/debug/")).toEqual({ page: "trace", traceId: "abc" });
    expect(routeOf("/debug/elsewhere", "http://h/debug/")).toEqual({ page: "home" });
    expect(routeOf("/ops/debug/compare", "http://h/ops/debug/")).toEqual({ page: "compare" });
  });
});

describe("the token", () => {
  beforeEach(() => clearToken());

  it("moves from a shared link into session storage and out of the address bar", () => {
    window.history.pushState({}, "", "/debug/trace/abc?token=s3cret&x=1#top");
    captureTokenFromUrl();
    expect(getToken()).toBe("s3cret");
    expect(window.location.pathname + window.location.search + window.location.hash).toBe("/debug/trace/abc?x=1#top");
  });

  it("is sent as a bearer token; a refusal becomes an AuthError with the server's message", async () => {
    setToken("wrong");
    const calls: Array<[string, RequestInit | undefined]> = [];
    vi.stubGlobal("fetch", async (url: URL, init?: RequestInit) => {
      calls.push([String(url), init]);
      return new Response(JSON.stringify({ error: "the token is not valid for this debug API" }), { status: 401 });
    });
    const failure = await apiGet("traces", { since: "-1h", status: undefined }).catch((error: unknown) => error);
    vi.unstubAllGlobals();
    expect(failure).toBeInstanceOf(AuthError);
    expect((failure as AuthError).status).toBe(401);
    expect(calls[0][0]).toMatch(/\/api\/traces\?since=-1h$/);
    expect(calls[0][1]?.headers).toEqual({ Authorization: "Bearer wrong" });
    expect(refusal(failure as AuthError, true)).toBe(
      "The server refused the token (401): the token is not valid for this debug API",
    );
  });
});
