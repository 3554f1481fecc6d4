import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { openStateBackend } from '../../src/storage/backends/state/state.backend';
import { testStorageOptions } from './options';
import { describeStorageContract } from './contract';
import { ContractTarget } from './contract-target';
import { describeJobLockContract } from './job-lock.contract';
import { sampleKey } from './contract';

const target: ContractTarget = {
  name: 'state',
  shared: false,
  persistent: true,
  persistsKeysOnly: true,
  prepare: async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ditto-state-'));
    const options = testStorageOptions({ state: { file: path.join(dir, 'nested', 'state.json') } });
    return { open: () => openStateBackend(options), teardown: async () => rmSync(dir, { recursive: true, force: true }) };
  },
};

describeStorageContract(target);
describeJobLockContract(target, { freedBy: 'ttl' });

describe('state backend', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-state-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads keys of a file written before the response cache as following the global TTL', async () => {
    const file = path.join(dir, 'state.json');
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    const { cache, allowedRoutes, ...old } = sampleKey('old', { limits: { rpm: 60, tpm: null } });
    writeFileSync(file, JSON.stringify({ version: 1, virtual_keys: [old] }));
    const backend = await openStateBackend(testStorageOptions({ state: { file } }));
    try {
      expect(await backend.keys.get('old')).toEqual({ ...old, cache: { ttlSecs: null }, allowedRoutes: [] });
      await backend.keys.update({ ...old, cache: { ttlSecs: 0 }, allowedRoutes: [] });
      expect(JSON.parse(readFileSync(file, 'utf8')).virtual_keys[0].cache).toEqual({ ttlSecs: 0 });
    } finally {
      await backend.close();
    }
  });
});
