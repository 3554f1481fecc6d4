import { GatewayError } from '../common/errors/gateway-error';
import { StorageUnavailableError } from '../common/errors/storage-errors';
import { AuditRecordRejected } from './ports/audit-log.repository';

/** What a port means to say (DuplicateError, InvalidCursorError, … are GatewayErrors): passed through as they are. Anything else is the store failing. */
const DOMAIN_ERRORS = [GatewayError, AuditRecordRejected];

/**
 * `port` with every failure that is not a domain error (the store down, a timeout, a driver's own
 * error) turned into StorageUnavailableError: 503 `storage_unavailable` on the admin API as on the
 * proxy, never a masked 500, and never a driver's words for a client. The cause is reported to
 * `failed` (log and metric) with the operation's name. Async iterators (audit scans) are guarded too.
 */
export function guardedPort<T extends object>(port: T, name: string, failed: (operation: string, error: unknown) => void): T {
  const translate = (operation: string, error: unknown): never => {
    if (DOMAIN_ERRORS.some((type) => error instanceof type)) throw error;
    failed(`${name}.${operation}`, error);
    throw new StorageUnavailableError(`the store did not answer (${name}.${operation}); retry shortly`);
  };
  const wrappers = new Map<PropertyKey, unknown>();
  return new Proxy(port, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      let wrapper = wrappers.get(property);
      if (wrapper === undefined) {
        const operation = String(property);
        wrapper = function (this: unknown, ...args: unknown[]) {
          let result: unknown;
          try {
            result = (value as (...a: unknown[]) => unknown).apply(target, args);
          } catch (error) {
            return translate(operation, error);
          }
          if (result instanceof Promise) return result.catch((error: unknown) => translate(operation, error));
          if (isAsyncIterable(result)) return guardedIterable(result, (error) => translate(operation, error));
          return result;
        };
        wrappers.set(property, wrapper);
      }
      return wrapper;
    },
  });
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

async function* guardedIterable<T>(iterable: AsyncIterable<T>, translate: (error: unknown) => never): AsyncIterable<T> {
  try {
    yield* iterable;
  } catch (error) {
    translate(error);
  }
}
