import { routeRule } from './openai-routes';

describe('routeRule', () => {
  it('knows the methods and upload routes of the OpenAI API', () => {
    expect(routeRule('/chat/completions')).toEqual({ methods: ['GET', 'POST'], uploads: false });
    expect(routeRule('/embeddings').methods).toEqual(['POST']);
    expect(routeRule('/responses/input_tokens').methods).toEqual(['POST']);
    expect(routeRule('/responses/resp_1').methods).toEqual(['GET', 'DELETE']);
    expect(routeRule('/audio/transcriptions').uploads).toBe(true);
    expect(routeRule('/images/edits').uploads).toBe(true);
    expect(routeRule('/uploads/upload_1/parts').uploads).toBe(true);
    expect(routeRule('/uploads/upload_1/complete')).toEqual({ methods: ['POST'], uploads: false });
    expect(routeRule('/models/ft:gpt-4o:acme').methods).toEqual(['GET', 'DELETE']);
  });

  it('treats an unknown path the strictest way the API allows: GET, POST or DELETE, JSON bodies only', () => {
    for (const path of ['/vector_stores/vs_1/files', '/custom/batch', '/chat/completions/x/y/z']) {
      expect(routeRule(path)).toEqual({ methods: ['GET', 'POST', 'DELETE'], uploads: false });
    }
  });
});
