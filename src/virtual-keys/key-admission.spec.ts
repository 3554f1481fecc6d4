import { VirtualKey } from './domain/virtual-key';
import { KeyAdmission, createsBatch, createsEphemeralKey, modelIdInPath } from './key-admission';

describe('what a request line names', () => {
  it.each([
    ['POST', '/batches', true],
    ['POST', '/Batches', true],
    ['POST', '/batches/', true],
    ['POST', '/BATCHES;v=1', true],
    ['GET', '/batches', false],
    ['POST', '/batches/b_1/cancel', false],
    ['POST', '/batchesx', false],
  ])('%s %s creates a batch: %s (however an upstream may spell the route)', (method, path, expected) => {
    expect(createsBatch(method, path)).toBe(expected);
  });

  it.each([
    ['POST', '/realtime/client_secrets', true],
    ['POST', '/Realtime/Client_Secrets/', true],
    ['POST', '/realtime/sessions;v=1', true],
    ['POST', '/realtime/transcription_sessions', true],
    ['GET', '/realtime/client_secrets', false],
    ['POST', '/realtime/calls', false],
    ['POST', '/responses', false],
  ])('%s %s mints an ephemeral realtime credential: %s', (method, path, expected) => {
    expect(createsEphemeralKey(method, path)).toBe(expected);
  });

  it.each([
    ['/models/gpt-4o-mini', 'gpt-4o-mini'],
    ['/Models/gpt-4o', 'gpt-4o'],
    ['/models/ft:gpt-4o-mini:acme::abc123', 'ft:gpt-4o-mini:acme::abc123'],
    ['/models/meta-llama/Llama-3.1-8B', 'meta-llama/Llama-3.1-8B'],
    ['/models/my%20model', 'my model'],
    ['/models', null],
    ['/chat/completions', null],
  ])('%s names model %s', (path, expected) => {
    expect(modelIdInPath(path)).toBe(expected);
  });
});

describe('a request that runs a model but names none', () => {
  const admission = new KeyAdmission(null as never, null as never);
  const key = (models: string[]) => ({ models }) as VirtualKey;

  it.each(['/chat/completions', '/Chat/Completions', '/embeddings/', '/moderations;x=1', '/audio/transcriptions'])(
    'is refused on %s for a key with a model allow-list (the upstream would pick its default model)',
    (path) => {
      expect(() => admission.checkModelNamed(key(['gpt-4o-mini']), 'POST', path, false, false)).toThrow(/must name its model/);
    },
  );

  it('passes for a key without an allow-list, on routes that run no model, and for reads', () => {
    expect(() => admission.checkModelNamed(key([]), 'POST', '/chat/completions', false, false)).not.toThrow();
    expect(() => admission.checkModelNamed(key(['gpt-4o-mini']), 'POST', '/files', true, false)).not.toThrow();
    expect(() => admission.checkModelNamed(key(['gpt-4o-mini']), 'GET', '/responses', false, false)).not.toThrow();
  });

  it('is refused for an upload when routing decides by model, even without an allow-list', () => {
    expect(() => admission.checkModelNamed(key([]), 'POST', '/audio/transcriptions', true, true)).toThrow(/routes by model.*before the file part/);
    expect(() => admission.checkModelNamed(key([]), 'POST', '/audio/transcriptions', true, false)).not.toThrow();
  });
});
