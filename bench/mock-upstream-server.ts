/** Runs the mock upstream in its own process for the benchmark; prints its base URL. */
import { startMockUpstream } from './mock-upstream';

void startMockUpstream().then((mock) => process.stdout.write(`${mock.url}\n`));
