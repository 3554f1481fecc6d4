import { Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { ChangeFeed } from '../storage/ports/change-feed';
import { VirtualKey } from './domain/virtual-key';
import { hashToken } from './domain/token';
import { VirtualKeyRepository } from '../storage/ports/virtual-key.repository';

export const VIRTUAL_KEY_ENTITY = 'virtual_key';
/** Full reload now and then: a safety net for change events lost while a feed was reconnecting. */
const RESYNC_MS = 60_000;

/**
 * Every virtual key in memory, by token hash, so authenticating a request costs no storage round
 * trip (docs/architecture.md). Kept current by the change feed: an admin change on any replica reloads that key
 * here within the feed's delay (< 1 s); expiry is checked at lookup time, so it needs no event.
 */
@Injectable()
export class VirtualKeyIndex implements OnApplicationShutdown {
  private readonly logger = new Logger(VirtualKeyIndex.name);
  private byHash = new Map<string, VirtualKey>();
  private hashById = new Map<string, string>();
  private unsubscribe: (() => void) | null = null;
  private resync: NodeJS.Timeout | null = null;
  /** Ids changed while a full reload was in flight: its snapshot may predate them. */
  private changedDuringReload: Set<string> | null = null;
  private readonly refreshes = new Map<string, number>();

  constructor(
    private readonly keys: VirtualKeyRepository,
    private readonly changes: ChangeFeed,
  ) {}

  /** Loads every key and starts following the change feed. Called once the store is seeded. */
  async start(): Promise<void> {
    this.unsubscribe = this.changes.subscribe((event) => {
      if (event.entity !== VIRTUAL_KEY_ENTITY) return;
      this.changedDuringReload?.add(event.id);
      void this.refresh(event.id);
    });
    await this.reload();
    this.resync = setInterval(() => void this.reload(), RESYNC_MS).unref();
  }

  onApplicationShutdown(): void {
    this.unsubscribe?.();
    if (this.resync) clearInterval(this.resync);
  }

  get size(): number {
    return this.byHash.size;
  }

  /**
   * The key a presented token belongs to, if it may be used now. Throws invalid_api_key (unknown or
   * rotated-away token), key_disabled or key_expired.
   */
  authenticate(token: string, now = Date.now()): VirtualKey {
    const key = this.byHash.get(hashToken(token));
    if (!key) throw new GatewayError(ErrorCode.InvalidApiKey, 'invalid API key');
    if (!key.enabled) throw new GatewayError(ErrorCode.KeyDisabled, `virtual key '${key.id}' is disabled`);
    if (key.expiresAt !== null && key.expiresAt <= now) throw new GatewayError(ErrorCode.KeyExpired, `virtual key '${key.id}' has expired`);
    return key;
  }

  /** Applies a key's current stored state (or its deletion) to the index. */
  async refresh(id: string): Promise<void> {
    // Only the latest refresh of an id applies: an earlier, slower read must not undo a newer one.
    const generation = (this.refreshes.get(id) ?? 0) + 1;
    this.refreshes.set(id, generation);
    try {
      const key = await this.keys.get(id);
      if (this.refreshes.get(id) !== generation) return;
      this.refreshes.delete(id);
      this.apply(id, key);
    } catch (error) {
      this.logger.error(`could not reload virtual key '${id}' after a change: ${(error as Error).message}`);
    }
  }

  private apply(id: string, key: VirtualKey | null): void {
    const previous = this.hashById.get(id);
    if (previous !== undefined) this.byHash.delete(previous);
    this.hashById.delete(id);
    if (key) {
      this.byHash.set(key.tokenHash, key);
      this.hashById.set(id, key.tokenHash);
    }
  }

  private async reload(): Promise<void> {
    const changed = (this.changedDuringReload = new Set());
    try {
      const all = await this.keys.listAll();
      this.byHash = new Map(all.map((k) => [k.tokenHash, k]));
      this.hashById = new Map(all.map((k) => [k.id, k.tokenHash]));
    } catch (error) {
      this.logger.error(`could not reload virtual keys: ${(error as Error).message}`);
    } finally {
      this.changedDuringReload = null;
    }
    await Promise.all([...changed].map((id) => this.refresh(id)));
  }
}
