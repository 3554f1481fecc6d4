import { stopStarted } from './global-setup';

/** Jest global teardown of the storage-contract and e2e projects: stops what global-setup.ts started. */
export default async function globalTeardown(): Promise<void> {
  await stopStarted();
}
