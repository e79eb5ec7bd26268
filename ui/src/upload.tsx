// The reference RAG service's tiny upload page: send a document to POST /documents and show the trace id it
// returns with TraceBadge, which links to the debug page (mounted by the service at /debug/).

import { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { TraceBadge } from "./components/TraceLink";
import "./styles.css";

interface UploadResult {
  status: number;
  traceId: string | null;
  body: Record<string, unknown> | null;
}

export function UploadPage({ endpoint = "/documents", debugBase = "/debug/" }) {
  const [file, setFile] = useState<File | null>(null);
  const [user, setUser] = useState("");
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<UploadResult | null>(null);
  const upload = async (event: React.FormEvent) => {
    event.preventDefault();
    if (!file) return;
    setBusy(true);
    const form = new FormData();
    form.append("file", file);
    try {
      const response = await fetch(endpoint, {
        method: "POST",
        body: form,
        headers: user.trim() ? { "X-User-Id": user.trim() } : {},
      });
      const body = await response.json().catch(() => null);
      setResult({ status: response.status, traceId: response.headers.get("X-Trace-Id"), body });
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="upload">
      <h1>Upload a document</h1>
      <form onSubmit={upload}>
        <label htmlFor="file">Document (txt, md or pdf)</label>
        <input id="file" type="file" accept=".txt,.md,.pdf" onChange={(e) => setFile(e.target.files?.[0] ?? null)} />
        <label htmlFor="user">Your user id (optional)</label>
        <input id="user" value={user} onChange={(e) => setUser(e.target.value)} />
        <button type="submit" disabled={!file || busy}>
          {busy ? "Uploading…" : "Upload"}
        </button>
      </form>
      {result && (
        <section aria-live="polite" className={result.status < 400 ? "result" : "result problem"}>
          <p>
            {result.status < 400
              ? `Uploaded: ${String(result.body?.chunks ?? "?")} chunks.`
              : `Upload failed (${result.status}): ${String(result.body?.detail ?? result.body?.error ?? "")}`}
          </p>
          {result.traceId && <TraceBadge traceId={result.traceId} debugBase={debugBase} />}
        </section>
      )}
    </main>
  );
}

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <UploadPage />
    </StrictMode>,
  );
}
