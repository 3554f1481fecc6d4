import { Injectable } from '@nestjs/common';
import { AuditLogRepository } from './audit-log.repository';
import { newAuditId } from './domain/audit-id';
import { AuditRecord } from './domain/audit-record';

export interface AuditEvent {
  kind: string;
  requestId?: string | null;
  keyId?: string | null;
  tenantId?: string | null;
  payload: Record<string, unknown>;
}

/**
 * The audit trail's entry point for other features. Callers pass payloads already free of secrets.
 * For now every event is appended at once; the batched writer (audit issue) replaces this body
 * without changing callers.
 */
@Injectable()
export class AuditService {
  constructor(private readonly repository: AuditLogRepository) {}

  async record(event: AuditEvent): Promise<void> {
    const ts = Date.now();
    const record: AuditRecord = {
      id: newAuditId(ts),
      ts,
      kind: event.kind,
      requestId: event.requestId ?? null,
      keyId: event.keyId ?? null,
      tenantId: event.tenantId ?? null,
      payload: event.payload,
    };
    await this.repository.append([record]);
  }
}
