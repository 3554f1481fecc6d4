import { openMemoryBackend } from '../../src/storage/backends/memory/memory.backend';
import { describeStorageContract } from './contract';
import { ContractTarget } from './contract-target';
import { describeJobLockContract } from './job-lock.contract';

const target: ContractTarget = {
  name: 'memory',
  shared: false,
  persistent: false,
  prepare: async () => ({ open: openMemoryBackend, teardown: async () => undefined }),
};

describeStorageContract(target);
describeJobLockContract(target, { freedBy: 'ttl' });
