// Process-wide settings pi reads from the environment; the worker calls this once at boot.

/**
 * Sets PI_OFFLINE=1 (no remote model catalogs, no package auto-install), PI_TELEMETRY=0 and
 * PI_CODING_AGENT_DIR=<agentDir> (an empty, worker-private dir) in process.env. Call once at
 * worker boot, before any runtime or session is created. Provider keys must not be in the env
 * (pi falls back to them for built-in providers, hazard H6): the worker deletes them at boot.
 */
export function preparePiProcess(agentDir: string): void {
  process.env.PI_OFFLINE = "1";
  process.env.PI_TELEMETRY = "0";
  process.env.PI_CODING_AGENT_DIR = agentDir;
}
