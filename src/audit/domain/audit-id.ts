import { randomBytes } from 'node:crypto';

/** Random per process, so ids minted by several replicas in the same millisecond never collide. */
const PROCESS = randomBytes(4).toString('hex');
let counter = 0;

/**
 * Audit ids sort by creation time: 9 base36 digits of epoch ms (good until year 5188), then the
 * process tag and a per-process counter (no CSPRNG call per event: this runs once per request).
 */
export function newAuditId(now = Date.now()): string {
  counter = (counter + 1) % 0x1000000;
  return now.toString(36).padStart(9, '0') + PROCESS + counter.toString(16).padStart(6, '0');
}
