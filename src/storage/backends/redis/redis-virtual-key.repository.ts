import { Redis } from 'ioredis';
import { encodeCursor, Page } from '../../../common/page';
import { VirtualKey, VirtualKeyFilter } from '../../../virtual-keys/domain/virtual-key';
import { VirtualKeyRepository } from '../../ports/virtual-key.repository';
import { RedisKeys } from './redis-keys';
import { virtualKeyFromJson, virtualKeyToJson } from './redis-virtual-key.mapper';
import { runScript } from './redis-scripts';
import { DuplicateError, keyIdTaken, readCursor, seedRepeats, tokenTaken } from '../../../common/errors/storage-errors';

const SCAN_CHUNK = 200;

function conflict(reason: unknown, id: string): DuplicateError {
  return reason === 'id' ? keyIdTaken(id) : tokenTaken();
}

function matches(key: VirtualKey, filter: VirtualKeyFilter): boolean {
  return (
    (filter.tenantId === undefined || key.tenantId === filter.tenantId) &&
    (filter.projectId === undefined || key.projectId === filter.projectId) &&
    (filter.userId === undefined || key.userId === filter.userId) &&
    (filter.enabled === undefined || key.enabled === filter.enabled)
  );
}

function isIdCursor(v: unknown): v is { id: string } {
  return typeof v === 'object' && v !== null && typeof (v as { id?: unknown }).id === 'string';
}

/**
 * Keys as JSON in one hash (id -> key), token hash -> id and id -> token hash hashes, and a
 * lex-ordered zset of ids for keyset paging. Every write that must keep id and token hash unique is one Lua script.
 */
export class RedisVirtualKeyRepository extends VirtualKeyRepository {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    super();
  }

  private get scriptKeys(): string[] {
    const { records, byToken, tokenOf, ids } = this.keys.vk;
    return [records, byToken, tokenOf, ids];
  }

  async create(key: VirtualKey): Promise<void> {
    const reply = await runScript(this.redis, 'vkCreate', this.scriptKeys, [key.id, key.tokenHash, virtualKeyToJson(key)]);
    if (reply !== 'ok') throw conflict(reply, key.id);
  }

  async update(key: VirtualKey): Promise<boolean> {
    const reply = await runScript(this.redis, 'vkUpdate', this.scriptKeys, [key.id, key.tokenHash, virtualKeyToJson(key)]);
    if (reply === 'missing') return false;
    if (reply !== 'ok') throw conflict(reply, key.id);
    return true;
  }

  async get(id: string): Promise<VirtualKey | null> {
    const json = await this.redis.hget(this.keys.vk.records, id);
    return json === null ? null : virtualKeyFromJson(json);
  }

  async findByTokenHash(tokenHash: string): Promise<VirtualKey | null> {
    const id = await this.redis.hget(this.keys.vk.byToken, tokenHash);
    return id === null ? null : this.get(id);
  }

  async delete(id: string): Promise<boolean> {
    return (await runScript(this.redis, 'vkDelete', this.scriptKeys, [id])) === 1;
  }

  /** Walks the id index from the cursor, filtering as it goes, until one match more than `limit`
   * shows whether a next page exists (or the index ends). The cursor is the last id returned. */
  async list(filter: VirtualKeyFilter, limit: number, cursor: string | null): Promise<Page<VirtualKey>> {
    const pageSize = Math.max(1, limit);
    let after = readCursor(cursor, isIdCursor)?.id ?? null;
    const found: VirtualKey[] = [];
    const chunk = Math.max(SCAN_CHUNK, pageSize + 1);
    for (;;) {
      const ids = await this.redis.zrangebylex(this.keys.vk.ids, after === null ? '-' : `(${after}`, '+', 'LIMIT', 0, chunk);
      if (ids.length === 0) break;
      const docs = await this.redis.hmget(this.keys.vk.records, ...ids);
      for (const json of docs) {
        if (json === null) continue; // deleted since the index was read
        const key = virtualKeyFromJson(json);
        if (matches(key, filter)) found.push(key);
        if (found.length > pageSize) break;
      }
      if (found.length > pageSize || ids.length < chunk) break;
      after = ids[ids.length - 1];
    }
    const items = found.slice(0, pageSize);
    const nextCursor = found.length > pageSize ? encodeCursor({ id: items[items.length - 1].id }) : null;
    return { items, nextCursor };
  }

  async listAll(): Promise<VirtualKey[]> {
    const docs = await this.redis.hvals(this.keys.vk.records);
    return docs.map(virtualKeyFromJson).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  count(): Promise<number> {
    return this.redis.zcard(this.keys.vk.ids);
  }

  async seedIfEmpty(keys: VirtualKey[]): Promise<number> {
    if (keys.length === 0) return 0;
    const args = keys.flatMap((key) => [key.id, key.tokenHash, virtualKeyToJson(key)]);
    const reply = await runScript(this.redis, 'vkSeed', this.scriptKeys, args);
    if (typeof reply === 'string') throw seedRepeats();
    return Number(reply);
  }
}
