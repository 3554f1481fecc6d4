import { randomBytes } from 'node:crypto';
import { createConnection } from 'mongoose';
import { openMongooseBackend } from '../../src/storage/backends/mongoose/mongoose.backend';
import { describeStorageContract } from './contract';
import { ContractTarget } from './contract-target';
import { describeJobLockContract } from './job-lock.contract';
import { testStorageOptions } from './options';

const uri = process.env.MONGODB_URI ?? '';

const target: ContractTarget = {
  name: 'mongodb',
  shared: true,
  persistent: true,
  prepare: async () => {
    // A database per test: instances opened by one test share it, tests never see each other.
    const database = `ditto_test_${randomBytes(8).toString('hex')}`;
    const options = testStorageOptions({ mongodb: { uri, database } });
    return {
      open: () => openMongooseBackend(options),
      teardown: async () => {
        const connection = await createConnection(uri, { dbName: database, serverSelectionTimeoutMS: 5_000 }).asPromise();
        try {
          await connection.dropDatabase();
        } finally {
          await connection.close();
        }
      },
    };
  },
};

if (uri) {
  // Opening waits up to 5 s for server selection; let its error surface instead of a hook timeout.
  jest.setTimeout(20_000);
  describeStorageContract(target);
  describeJobLockContract(target, { freedBy: 'ttl' });
} else {
  process.stderr.write('\n*** MongoDB storage contract suite SKIPPED: MONGODB_URI is not set ***\n\n');
  describe.skip('storage contract: mongodb (MONGODB_URI not set)', () => {
    describeStorageContract(target);
    describeJobLockContract(target, { freedBy: 'ttl' });
  });
}
