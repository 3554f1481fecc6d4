import * as fs from 'node:fs';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { RateDecision, RateLimitRule, ScopeCounts, decide, tokenCost, tokenDelta } from '../../../rate-limits/domain/rate-decision';
import { Bucket, WINDOW_MS, bucketIndex } from '../../../rate-limits/domain/sliding-window';
import { RateLimiterStore } from '../../ports/rate-limiter-store';

const SCRIPTS = { rateLimitAdmit: 'rate-limit-admit.lua', rateLimitAdjust: 'rate-limit-adjust.lua' } as const;
type ScriptName = keyof typeof SCRIPTS;
type ScriptCall = (numKeys: number, ...args: Array<string | number>) => Promise<unknown>;

const sources = Object.fromEntries(
  Object.entries(SCRIPTS).map(([name, file]) => [name, fs.readFileSync(path.join(__dirname, 'lua', file), 'utf8')]),
) as Record<ScriptName, string>;


/**
 * The counters in redis/valkey, shared by every replica on the store: one hash per scope,
 * `<prefix>:rlb:<scope>`, a field per one-second bucket (`<index>` = `requests:tokens:last`,
 * domain/sliding-window.ts), expiring two windows after its last admission. Admission is
 * ONE script call for all of a request's scopes (lua/rate-limit-admit.lua), an adjustment one more
 * (lua/rate-limit-adjust.lua): EVALSHA, EVAL only after a NOSCRIPT. Time is the gateway's
 * clock, so replicas' clocks should agree (NTP); a skew of s ms can let a bucket count s ms longer or
 * shorter.
 * Multi-key scripts: like the ledger's, not for Redis Cluster.
 */
export class RedisRateLimiter extends RateLimiterStore {
  /** `redis`: the store's command connection (the limiter does not close it). */
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {
    super();
    for (const name of Object.keys(SCRIPTS) as ScriptName[]) {
      if (!(name in redis)) redis.defineCommand(name, { lua: sources[name] });
    }
  }

  async admit(rules: RateLimitRule[], tokens: number, now = Date.now()): Promise<RateDecision> {
    const cost = tokenCost(tokens);
    const limits = rules.flatMap((rule) => [rule.rpm ?? -1, rule.tpm ?? -1]);
    const keys = rules.map((rule) => this.key(rule.scope));
    const reply = ((await this.run('rateLimitAdmit', keys, [now, WINDOW_MS, bucketIndex(now), cost, ...limits])) as unknown[]).map(Number);
    const counts: ScopeCounts[] = [];
    let at = 1;
    for (let i = 0; i < rules.length; i++) {
      const buckets: Bucket[] = [];
      const n = reply[at++];
      for (let j = 0; j < n; j++, at += 4) buckets.push({ index: reply[at], requests: reply[at + 1], tokens: reply[at + 2], last: reply[at + 3] });
      counts.push(buckets);
    }
    return decide(rules, counts, cost, now, reply[0] === 1);
  }

  async adjustTokens(rules: RateLimitRule[], delta: number, admittedAt: number, now = Date.now()): Promise<void> {
    const change = tokenDelta(delta);
    if (change === 0 || rules.length === 0 || admittedAt + WINDOW_MS <= now) return;
    await this.run('rateLimitAdjust', rules.map((rule) => this.key(rule.scope)), [bucketIndex(admittedAt), change, now, WINDOW_MS]);
  }


  private key(scope: string): string {
    return `${this.prefix}:rlb:${scope}`;
  }

  private run(name: ScriptName, keys: string[], args: Array<string | number>): Promise<unknown> {
    return (this.redis as unknown as Record<ScriptName, ScriptCall>)[name](keys.length, ...keys, ...args);
  }
}
