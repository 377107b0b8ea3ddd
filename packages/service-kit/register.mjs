// `node --conditions=tandem-src --import ./packages/service-kit/register.mjs services/<name>/src/main.ts`
// The container entry point. Tandem runs its TypeScript sources directly (the
// same code path as the tests: there is no separate compiled artefact to drift
// from them). tsx is resolved from here, a dependency of the kit, so a
// production install (`pnpm install --prod`) that leaves out the root's
// devDependencies still has it. Tracing needs no loader hook: the kit opens
// gRPC spans itself (see src/telemetry.ts), and runService starts the exporter.
import "tsx/esm";
