import { randomBytes } from 'node:crypto';

/**
 * Audit ids sort by creation time: 9 base36 digits of epoch ms (good until year 5188), then 10 random
 * hex digits so ids from several replicas in the same millisecond never collide.
 */
export function newAuditId(now = Date.now()): string {
  return now.toString(36).padStart(9, '0') + randomBytes(5).toString('hex');
}
