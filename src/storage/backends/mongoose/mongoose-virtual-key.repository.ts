import { QueryFilter } from 'mongoose';
import { Page, encodeCursor } from '../../../common/page';
import { VirtualKey, VirtualKeyFilter } from '../../../virtual-keys/domain/virtual-key';
import { VirtualKeyRepository } from '../../ports/virtual-key.repository';
import { keyFromDoc, keyToDoc } from './mongoose.mappers';
import { MongooseModels, VirtualKeyDoc, duplicateCount, isDuplicateKey } from './mongoose.schemas';
import { keyIdTaken, readCursor, tokenTaken } from '../../../common/errors/storage-errors';

const isString = (v: unknown): v is string => typeof v === 'string';

/** Keys by id (`_id`) with a unique index on the token hash: the index is what refuses a duplicate. */
export class MongooseVirtualKeyRepository extends VirtualKeyRepository {
  constructor(private readonly models: MongooseModels) {
    super();
  }

  async create(key: VirtualKey): Promise<void> {
    try {
      await this.models.keys.create(keyToDoc(key));
    } catch (error) {
      throw await this.createConflictOr(error, key.id);
    }
  }

  async update(key: VirtualKey): Promise<boolean> {
    // The unique index is what refuses a token hash owned by another key (and decides a race). Looked
    // up first as well, because not every server reports that refusal on an update as a duplicate key:
    // FerretDB 1.24 answers InternalError ("UNIQUE constraint failed"), which would surface as a 500.
    if ((await this.models.keys.exists({ token_hash: key.tokenHash, _id: { $ne: key.id } })) !== null) {
      throw tokenTaken();
    }
    try {
      const result = await this.models.keys.replaceOne({ _id: key.id }, keyToDoc(key));
      return result.matchedCount === 1;
    } catch (error) {
      // The id does not change: only the token hash's index can refuse.
      throw isDuplicateKey(error) ? tokenTaken() : error;
    }
  }

  async get(id: string): Promise<VirtualKey | null> {
    const doc = await this.models.keys.findById(id).lean<VirtualKeyDoc>();
    return doc ? keyFromDoc(doc) : null;
  }

  async findByTokenHash(tokenHash: string): Promise<VirtualKey | null> {
    const doc = await this.models.keys.findOne({ token_hash: tokenHash }).lean<VirtualKeyDoc>();
    return doc ? keyFromDoc(doc) : null;
  }

  async delete(id: string): Promise<boolean> {
    const result = await this.models.keys.deleteOne({ _id: id });
    return result.deletedCount === 1;
  }

  async list(filter: VirtualKeyFilter, limit: number, cursor: string | null): Promise<Page<VirtualKey>> {
    const after = readCursor(cursor, isString);
    const query: QueryFilter<VirtualKeyDoc> = {};
    if (filter.tenantId !== undefined) query.tenant_id = filter.tenantId;
    if (filter.projectId !== undefined) query.project_id = filter.projectId;
    if (filter.userId !== undefined) query.user_id = filter.userId;
    if (filter.enabled !== undefined) query.enabled = filter.enabled;
    if (after !== null) query._id = { $gt: after };
    const docs = await this.models.keys
      .find(query)
      .sort({ _id: 1 })
      .limit(limit + 1)
      .lean<VirtualKeyDoc[]>();
    const items = docs.slice(0, limit).map(keyFromDoc);
    return { items, nextCursor: docs.length > limit ? encodeCursor(items[items.length - 1].id) : null };
  }

  async listAll(): Promise<VirtualKey[]> {
    const docs = await this.models.keys.find().sort({ _id: 1 }).lean<VirtualKeyDoc[]>();
    return docs.map(keyFromDoc);
  }

  async count(): Promise<number> {
    return this.models.keys.countDocuments();
  }

  async seedIfEmpty(keys: VirtualKey[]): Promise<number> {
    if (keys.length === 0 || (await this.models.keys.exists({})) !== null) return 0;
    try {
      await this.models.keys.insertMany(keys.map(keyToDoc), { ordered: false, throwOnValidationError: true });
      return keys.length;
    } catch (error) {
      // Replicas starting together seed the same keys; whichever writes a key first wins it.
      const duplicates = duplicateCount(error);
      if (duplicates === null) throw error;
      return keys.length - duplicates;
    }
  }

  /**
   * A duplicate key error of a create as the conflict it stands for. Which index refused is read from
   * the store (is the id taken?), not from the error: MongoDB names the index (`keyPattern`), FerretDB
   * 1.24 does not.
   */
  private async createConflictOr(error: unknown, id: string): Promise<unknown> {
    if (!isDuplicateKey(error)) return error;
    return (await this.models.keys.exists({ _id: id })) !== null
      ? keyIdTaken(id)
      : tokenTaken();
  }
}

