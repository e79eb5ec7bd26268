// The token prompt: shown when the API answers 401/403, with the server's reason.

import { useState } from "react";

export function SignIn({ problem, onToken }: { problem: string | null; onToken: (token: string) => void }) {
  const [token, setTokenText] = useState("");
  return (
    <section className="sign-in" aria-labelledby="sign-in-title">
      <h2 id="sign-in-title">Sign in to the debug page</h2>
      {problem && (
        <p className="problem" role="alert">
          {problem}
        </p>
      )}
      <form
        onSubmit={(event) => {
          event.preventDefault();
          if (token.trim()) onToken(token.trim());
        }}
      >
        <label htmlFor="token">Debug token (OTEL_RAG_DEBUG_TOKEN)</label>
        <input
          id="token"
          type="password"
          autoComplete="current-password"
          value={token}
          onChange={(event) => setTokenText(event.target.value)}
          autoFocus
        />
        <button type="submit">Sign in</button>
      </form>
      <p className="hint">The token is kept for this browser tab only (session storage).</p>
    </section>
  );
}
