import { auditIndexFieldsFromJson, auditRecordToJson } from './redis-audit.mapper';

describe('auditIndexFieldsFromJson', () => {
  it('reads the indexed fields without the payload, whatever the strings hold', () => {
    const record = {
      id: 'a,"payload":1',
      ts: 1,
      kind: 'proxy,"payload":{"x":1}',
      requestId: '"},"payload":null',
      keyId: 'k\\",\\"payload\\":',
      tenantId: null,
      payload: { kind: 'not this', keyId: 'nor this', nested: { ',"payload":': '"' } },
    };
    expect(auditIndexFieldsFromJson(auditRecordToJson(record))).toEqual({ kind: record.kind, keyId: record.keyId, tenantId: null });
  });
});
