/**
 * Why the relay is not ready, or null when it is. Answered by `GET /readyz` (src/app.ts) and
 * checked by the SNS intake before it accepts a message (503, SNS retries); the composition root
 * (src/main.ts) makes it from the spool's state and the drain flag.
 */
export type ReadinessProbe = () => string | null;
