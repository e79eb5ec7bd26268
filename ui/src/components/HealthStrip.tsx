// The health strip: the verdict of `otel-rag health` for a window and its figures, in one line.

import { healthFigures } from "../charts";
import type { HealthAnswer } from "../types";

export function HealthStrip({ health }: { health: HealthAnswer }) {
  return (
    <section className={`health-strip status-${health.status.toLowerCase()}`} aria-label="Health" data-testid="health-strip">
      <strong className="status" data-testid="health-status">
        {health.status}
      </strong>
      <dl>
        {healthFigures(health).map(([label, value]) => (
          <div key={label}>
            <dt>{label}</dt>
            <dd>{value}</dd>
          </div>
        ))}
      </dl>
      {health.reasons.length > 0 && <p className="reasons">Why: {health.reasons.join("; ")}</p>}
    </section>
  );
}
