import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockOptions, MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { BackendEnv, SharedBackend, backendEnv } from './backends';
import { ADMIN_TOKEN, RunningGateway, startGateway } from './harness';

export interface ReplicaPair {
  a: RunningGateway;
  b: RunningGateway;
  upstream: MockUpstream;
  close(): Promise<void>;
}

/**
 * Two gateway replicas sharing a fresh store of `backend`, in front of one mock upstream (backend
 * `mock`), with the admin API on. `gateway` adds to the gateway.json, `env` to both replicas' environment.
 */
export async function startReplicaPair(
  backend: SharedBackend,
  options: { upstream?: MockOptions; gateway?: Record<string, unknown>; env?: Record<string, string> } = {},
): Promise<ReplicaPair> {
  const store: BackendEnv = await backendEnv(backend);
  const upstream = await startMockUpstream(options.upstream);
  const dir = mkdtempSync(path.join(tmpdir(), 'ditto-pair-'));
  const file = path.join(dir, 'gateway.json');
  writeFileSync(file, JSON.stringify({ backends: [{ name: 'mock', base_url: upstream.url }], ...options.gateway }));
  const env = { ...store.env, GATEWAY_CONFIG: file, ADMIN_TOKEN, AUDIT_FLUSH_MS: '50', ...options.env };
  const a = await startGateway(env);
  const b = await startGateway(env);
  return {
    a,
    b,
    upstream,
    close: async () => {
      await a.close();
      await b.close();
      await upstream.close();
      await store.cleanup();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
