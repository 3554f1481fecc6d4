import { createsBatch, modelIdInPath } from './key-admission';

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
