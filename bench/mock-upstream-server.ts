/**
 * Runs the mock upstream in its own process for the benchmark; prints its base URL.
 * `node dist/bench/mock-upstream-server.js ['{"chunkDelayMs":1}']`: optional MockOptions as JSON.
 */
import { MockOptions, startMockUpstream } from './mock-upstream';

const options = JSON.parse(process.argv[2] ?? '{}') as MockOptions;
void startMockUpstream(options).then((mock) => process.stdout.write(`${mock.url}\n`));
