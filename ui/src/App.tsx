// The debug page: routes on the path below its <base href> (/debug/ or /debug/trace/{id}) and asks for the token
// whenever the API refuses one.

import { useCallback, useState } from "react";
import { AuthError, getToken, setToken } from "./api";
import { SignIn } from "./components/SignIn";
import { ComparePage } from "./pages/ComparePage";
import { HomePage } from "./pages/HomePage";
import { TracePage } from "./pages/TracePage";

export type Route = { page: "home" } | { page: "compare" } | { page: "trace"; traceId: string };

export function routeOf(pathname: string, baseUri: string): Route {
  const base = new URL(baseUri).pathname;
  const rest = pathname.startsWith(base) ? pathname.slice(base.length) : pathname;
  const trace = /^trace\/([^/]+)\/?$/.exec(rest);
  if (trace) return { page: "trace", traceId: decodeURIComponent(trace[1]) };
  return /^compare\/?$/.test(rest) ? { page: "compare" } : { page: "home" };
}

export function refusal(error: AuthError, hadToken: boolean): string {
  return hadToken && error.status === 401
    ? `The server refused the token (401): ${error.message}`
    : `${error.message} (${error.status})`;
}

export function App() {
  const route = routeOf(window.location.pathname, document.baseURI);
  const [problem, setProblem] = useState<string | null>(null);
  const [signedInTimes, setSignedInTimes] = useState(0);
  const onAuthError = useCallback((error: AuthError) => setProblem(refusal(error, getToken() !== null)), []);
  return (
    <>
      <header className="top">
        <a href="./" className="brand">
          otel-rag debug
        </a>
        <nav aria-label="Pages">
          <a href="./">Overview</a>
          <a href="compare">Compare</a>
        </nav>
      </header>
      <main>
        {problem !== null ? (
          <SignIn
            problem={problem}
            onToken={(token) => {
              setToken(token);
              setProblem(null);
              setSignedInTimes((times) => times + 1);
            }}
          />
        ) : route.page === "trace" ? (
          <TracePage key={signedInTimes} traceId={route.traceId} onAuthError={onAuthError} />
        ) : route.page === "compare" ? (
          <ComparePage key={signedInTimes} onAuthError={onAuthError} />
        ) : (
          <HomePage key={signedInTimes} onAuthError={onAuthError} />
        )}
      </main>
    </>
  );
}
