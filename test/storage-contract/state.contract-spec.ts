import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { openStateBackend } from '../../src/storage/backends/state/state.backend';
import { testStorageOptions } from './options';
import { describeStorageContract } from './contract';
import { ContractTarget } from './contract-target';
import { describeJobLockContract } from './job-lock.contract';

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
