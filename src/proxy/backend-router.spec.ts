import { gatewayFileSchema } from '../config/gateway-file';
import { BackendRoutes } from './backend-router';

const routes = new BackendRoutes(
  gatewayFileSchema.parse({
    backends: [
      { name: 'openai', base_url: 'https://api.openai.com/v1', weight: 3 },
      { name: 'azure', base_url: 'https://azure.example/v1', weight: 1 },
      { name: 'anthropic', base_url: 'https://anthropic.example/v1' },
      { name: 'local', base_url: 'http://127.0.0.1:8000/v1', weight: 0 },
    ],
    router: {
      default_backends: ['openai', 'azure'],
      rules: [
        { model: 'claude-*', backends: ['anthropic'] },
        { model: 'claude-3-haiku', backends: ['local'] },
        { model: 'claude-3-*', backends: ['azure', 'anthropic'] },
      ],
    },
  }),
);
const names = (model: string | null, pinned: string | null = null, r = 0) => routes.route(model, pinned, () => r).map((b) => b.name);

describe('BackendRoutes', () => {
  it('prefers an exact rule, then the longest prefix rule, then the defaults', () => {
    expect(names('claude-3-haiku')).toEqual(['local']);
    expect(names('claude-3-opus')).toEqual(['azure', 'anthropic']);
    expect(names('claude-2')).toEqual(['anthropic']);
    expect(names('gpt-4o')).toEqual(['openai', 'azure']);
    expect(names(null)).toEqual(['openai', 'azure']);
  });

  it('picks the primary by weight and keeps the others as fallbacks', () => {
    expect(names('gpt-4o', null, 0.0)).toEqual(['openai', 'azure']);
    expect(names('gpt-4o', null, 0.74)).toEqual(['openai', 'azure']);
    expect(names('gpt-4o', null, 0.76)).toEqual(['azure', 'openai']);
  });

  it('uses only the backend a key is pinned to', () => {
    expect(names('gpt-4o', 'anthropic')).toEqual(['anthropic']);
    expect(names('gpt-4o', 'missing')).toEqual([]);
  });
});
