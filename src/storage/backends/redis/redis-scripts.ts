import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChainableCommander, Redis } from 'ioredis';

/** Each script and the files it is made of (ledger scripts share a prelude of helpers). */
const SCRIPTS = {
  vkCreate: ['vk-create.lua'],
  vkUpdate: ['vk-update.lua'],
  vkDelete: ['vk-delete.lua'],
  vkSeed: ['vk-seed.lua'],
  ledgerReserve: ['ledger-lib.lua', 'ledger-reserve.lua'],
  ledgerSettle: ['ledger-lib.lua', 'ledger-settle.lua'],
  ledgerSetLimit: ['ledger-lib.lua', 'ledger-set-limit.lua'],
  ledgerResetSpent: ['ledger-lib.lua', 'ledger-reset-spent.lua'],
  ledgerPutReservation: ['ledger-lib.lua', 'ledger-put-reservation.lua'],
  accountingBatch: ['ledger-lib.lua', 'accounting-batch.lua'],
  auditAppend: ['audit-append.lua'],
  auditDelete: ['audit-delete.lua'],
  jobLockRelease: ['job-lock-release.lua'],
  jobLockRenew: ['job-lock-renew.lua'],
} as const;

export type ScriptName = keyof typeof SCRIPTS;
type Arg = string | number;
type ScriptCall = (numKeys: number, ...args: Arg[]) => Promise<unknown>;

const sources = new Map<ScriptName, string>(
  (Object.keys(SCRIPTS) as ScriptName[]).map((name) => [
    name,
    SCRIPTS[name].map((file) => fs.readFileSync(path.join(__dirname, 'lua', file), 'utf8')).join('\n'),
  ]),
);

/** Registers every script on a connection: ioredis sends EVALSHA and falls back to EVAL on NOSCRIPT. */
export function defineScripts(redis: Redis): void {
  for (const [name, lua] of sources) redis.defineCommand(name, { lua });
}

/** Runs a script registered by defineScripts. */
export function runScript(redis: Redis, name: ScriptName, keys: string[], args: Arg[]): Promise<unknown> {
  return (redis as unknown as Record<ScriptName, ScriptCall>)[name](keys.length, ...keys, ...args);
}

/** Queues a script call in a pipeline (its reply comes back from `exec()`). */
export function queueScript(pipeline: ChainableCommander, name: ScriptName, keys: string[], args: Arg[]): void {
  (pipeline as unknown as Record<ScriptName, ScriptCall>)[name](keys.length, ...keys, ...args);
}
