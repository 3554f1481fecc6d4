import { Page, encodeCursor } from '../../../common/page';
import { VirtualKey, VirtualKeyFilter } from '../../../virtual-keys/domain/virtual-key';
import { VirtualKeyRepository } from '../../ports/virtual-key.repository';
import { VirtualKeyEntity } from './entities/virtual-key.entity';
import { toVirtualKey, toVirtualKeyEntity } from './mappers/virtual-key.mapper';
import { SqlSession, TypeormStore, isUniqueViolation } from './typeorm-store';
import { keyIdOrTokenTaken, keyIdTaken, readCursor, tokenTaken } from '../../../common/errors/storage-errors';

/** Rows per multi-row INSERT when seeding: 19 columns stays far below both dialects' parameter limits. */
const SEED_CHUNK = 500;

const isString = (v: unknown): v is string => typeof v === 'string';

export class TypeormVirtualKeyRepository extends VirtualKeyRepository {
  constructor(private readonly store: TypeormStore) {
    super();
  }

  async create(key: VirtualKey): Promise<void> {
    await this.conflictsAsDuplicates(() =>
      this.store.transaction(async (s) => {
        const clashes = await s.manager.find(VirtualKeyEntity, {
          select: { id: true },
          where: [{ id: key.id }, { tokenHash: key.tokenHash }],
        });
        if (clashes.some((k) => k.id === key.id)) throw keyIdTaken(key.id);
        if (clashes.length > 0) throw tokenTaken();
        await s.manager.insert(VirtualKeyEntity, toVirtualKeyEntity(key));
      }),
    );
  }

  async update(key: VirtualKey): Promise<boolean> {
    return this.conflictsAsDuplicates(() =>
      this.store.transaction(async (s) => {
        const owner = await s.manager.findOne(VirtualKeyEntity, { select: { id: true }, where: { tokenHash: key.tokenHash } });
        if (owner && owner.id !== key.id) throw tokenTaken();
        const { id, ...fields } = toVirtualKeyEntity(key);
        const result = await s.manager.update(VirtualKeyEntity, { id }, fields);
        return (result.affected ?? 0) > 0;
      }),
    );
  }

  async get(id: string): Promise<VirtualKey | null> {
    const row = await this.store.session((s) => s.manager.findOneBy(VirtualKeyEntity, { id }));
    return row ? toVirtualKey(row) : null;
  }

  async findByTokenHash(tokenHash: string): Promise<VirtualKey | null> {
    const row = await this.store.session((s) => s.manager.findOneBy(VirtualKeyEntity, { tokenHash }));
    return row ? toVirtualKey(row) : null;
  }

  async delete(id: string): Promise<boolean> {
    const result = await this.store.session((s) => s.manager.delete(VirtualKeyEntity, { id }));
    return (result.affected ?? 0) > 0;
  }

  async list(filter: VirtualKeyFilter, limit: number, cursor: string | null): Promise<Page<VirtualKey>> {
    const size = Math.max(1, limit);
    const after = readCursor(cursor, isString);
    const rows = await this.store.session((s) => {
      const query = s.manager.createQueryBuilder(VirtualKeyEntity, 'k').orderBy('k.id', 'ASC').limit(size + 1);
      if (after !== null) query.andWhere('k.id > :after', { after });
      if (filter.tenantId !== undefined) query.andWhere('k.tenantId = :tenantId', { tenantId: filter.tenantId });
      if (filter.projectId !== undefined) query.andWhere('k.projectId = :projectId', { projectId: filter.projectId });
      if (filter.userId !== undefined) query.andWhere('k.userId = :userId', { userId: filter.userId });
      if (filter.enabled !== undefined) query.andWhere('k.enabled = :enabled', { enabled: filter.enabled });
      return query.getMany();
    });
    const items = rows.slice(0, size).map(toVirtualKey);
    return { items, nextCursor: rows.length > size ? encodeCursor(items[items.length - 1].id) : null };
  }

  async listAll(): Promise<VirtualKey[]> {
    const rows = await this.store.session((s) => s.manager.find(VirtualKeyEntity, { order: { id: 'ASC' } }));
    return rows.map(toVirtualKey);
  }

  async count(): Promise<number> {
    return this.store.session((s) => s.manager.count(VirtualKeyEntity));
  }

  async seedIfEmpty(keys: VirtualKey[]): Promise<number> {
    return this.conflictsAsDuplicates(() =>
      this.store.transaction(async (s) => {
        await this.excludeConcurrentSeeding(s);
        if ((await s.manager.count(VirtualKeyEntity)) > 0) return 0;
        for (let i = 0; i < keys.length; i += SEED_CHUNK) {
          await s.manager.insert(VirtualKeyEntity, keys.slice(i, i + SEED_CHUNK).map(toVirtualKeyEntity));
        }
        return keys.length;
      }),
    );
  }

  /** Replicas booting together must not both see an empty table and both seed it. SQLite's
   * BEGIN IMMEDIATE already serialises writers; PostgreSQL needs a lock that also blocks readers' writes. */
  private async excludeConcurrentSeeding(s: SqlSession): Promise<void> {
    if (this.store.dialect === 'postgres') await s.run(`LOCK TABLE ${this.store.table('virtual_keys')} IN EXCLUSIVE MODE`);
  }

  /** The pre-checks name the clash; a concurrent insert that slips past them still ends up as Conflict. */
  private async conflictsAsDuplicates<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (isUniqueViolation(error)) throw keyIdOrTokenTaken();
      throw error;
    }
  }
}


