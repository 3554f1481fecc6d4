import { decodeCursor } from '../page';
import { ErrorCode, GatewayError } from './gateway-error';

/**
 * What a storage port throws, in the same words on every backend: each is a GatewayError with its
 * code, so the one error filter maps it to HTTP (409, 400, 503) like any other. Features never see a
 * driver's error or its text.
 */

/** A value that must be unique is taken (409 conflict). */
export class DuplicateError extends GatewayError {
  constructor(message: string) {
    super(ErrorCode.Conflict, message);
    this.name = 'DuplicateError';
  }
}

/** A paging cursor that this store did not hand out (400, param `cursor`). */
export class InvalidCursorError extends GatewayError {
  constructor() {
    super(ErrorCode.InvalidRequest, 'invalid cursor', 'cursor');
    this.name = 'InvalidCursorError';
  }
}

/** The store did not answer, or failed for a reason of its own (503 storage_unavailable). */
export class StorageUnavailableError extends GatewayError {
  constructor(message: string) {
    super(ErrorCode.StorageUnavailable, message);
    this.name = 'StorageUnavailableError';
  }
}

export const keyIdTaken = (id: string) => new DuplicateError(`virtual key '${id}' already exists`);
export const tokenTaken = () => new DuplicateError('the token is already used by another virtual key');
export const keyIdOrTokenTaken = () => new DuplicateError('a virtual key with this id or token already exists');
export const seedRepeats = () => new DuplicateError('the seed keys repeat an id or a token');

/** A paging cursor's position: null for the first page; InvalidCursorError when the cursor is not one this store handed out. */
export function readCursor<T>(cursor: string | null, guard: (value: unknown) => value is T): T | null {
  if (cursor === null) return null;
  const position = decodeCursor(cursor, guard);
  if (position === null) throw new InvalidCursorError();
  return position;
}
