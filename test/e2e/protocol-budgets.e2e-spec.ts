import Anthropic from '@anthropic-ai/sdk';
import { AnthropicMock, startAnthropicMock } from '../fixtures/anthropic-faithful-mock';
import { adminGet, within } from './harness';
import { ReplicaPair, startReplicaPair } from './replica-pair';

const KEY = 'sk-ditto-streams-0123456789abcdefghijkl';
const UPSTREAM_KEY = 'sk-ant-upstream-pair-0123456789';
const STREAMS = 300;
/** Far less than 300 streams could use: some are capped or refused, none may take the scope over. */
const LIMIT = 3000;

type Usage = { input_tokens: number; output_tokens: number; cache_creation_input_tokens?: number | null; cache_read_input_tokens?: number | null };
const tokensOf = (u: Usage) => u.input_tokens + (u.cache_creation_input_tokens ?? 0) + (u.cache_read_input_tokens ?? 0) + u.output_tokens;

/**
 * Anthropic streams under one budget across two replicas sharing Redis: reservations and settles in
 * the Messages API's units hold the limit exactly as they do for OpenAI's (docs/budgets.md).
 */
describe('budgets of /v1/messages streams over two replicas on redis (e2e)', () => {
  let upstream: AnthropicMock;
  let pair: ReplicaPair;

  beforeAll(async () => {
    upstream = await startAnthropicMock(UPSTREAM_KEY, { delayMs: 1 });
    pair = await startReplicaPair('redis', {
      gateway: {
        backends: [{ name: 'anthropic', type: 'anthropic', base_url: upstream.url, api_key: UPSTREAM_KEY }],
        virtual_keys: [{ id: 'streams', token: KEY, budget: { total_tokens: LIMIT } }],
      },
    });
  }, 30_000);

  afterAll(async () => {
    try {
      await pair?.close();
    } finally {
      await upstream?.close();
    }
  });

  it(`${STREAMS} concurrent streams: spent ≤ limit, spent = Σ the usage the clients saw, nothing left reserved`, async () => {
    const clients = [pair.a, pair.b].map((g) => new Anthropic({ apiKey: KEY, baseURL: g.url, maxRetries: 0 }));
    const outcomes = await Promise.all(
      Array.from({ length: STREAMS }, async (_, i) => {
        try {
          const final = await clients[i % 2].messages.stream({ model: 'claude-haiku-4-5', max_tokens: 40, messages: [{ role: 'user', content: `stream ${i}` }] }).finalMessage();
          return { ok: true as const, tokens: tokensOf(final.usage) };
        } catch (error) {
          return { ok: false as const, status: (error as { status?: number }).status, type: (error as { error?: { error?: { type?: string } } }).error?.error?.type };
        }
      }),
    );
    const served = outcomes.filter((o) => o.ok);
    const refused = outcomes.filter((o) => !o.ok);
    // Every refusal is the budget's, in Anthropic's shape; both kinds happened.
    expect(new Set(refused.map((o) => `${o.status} ${o.type}`))).toEqual(new Set(['402 billing_error']));
    expect(served.length).toBeGreaterThan(50);
    expect(refused.length).toBeGreaterThan(0);

    const seen = served.reduce((sum, o) => sum + o.tokens, 0);
    await within(5000, async () => (await adminGet(pair.a, '/admin/budgets/key:streams')).body.reserved_tokens === 0);
    const scope = (await adminGet(pair.b, '/admin/budgets/key:streams')).body;
    expect(scope).toMatchObject({ spent_tokens: seen, reserved_tokens: 0 });
    expect(scope.spent_tokens).toBeLessThanOrEqual(LIMIT);
  }, 60_000);
});
