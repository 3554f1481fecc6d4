import { openMemoryBackend } from '../../src/storage/backends/memory/memory.backend';
import { describeStorageContract } from './contract';

describeStorageContract({
  name: 'memory',
  shared: false,
  persistent: false,
  prepare: async () => ({ open: openMemoryBackend, teardown: async () => undefined }),
});
