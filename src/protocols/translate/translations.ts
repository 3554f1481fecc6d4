import type { BackendType } from '../../config/gateway-file';
import type { ProtocolName } from '../ingress';
import { ANTHROPIC_TO_OPENAI } from './anthropic-to-openai';
import { OPENAI_TO_ANTHROPIC } from './openai-to-anthropic';
import type { Translation } from './translation';

/**
 * The translation that lets a backend of `backend`'s type serve a request of `protocol` on `path`
 * (the path after the protocol's prefix), or null when there is none (docs/protocols.md): OpenAI chat
 * completions to an `anthropic` backend, Anthropic Messages to an `openai` backend.
 */
export function translationFor(protocol: ProtocolName, path: string, backend: BackendType): Translation | null {
  if (protocol === 'openai' && path === '/chat/completions' && backend === 'anthropic') return OPENAI_TO_ANTHROPIC;
  if (protocol === 'anthropic' && path === '/messages' && backend === 'openai') return ANTHROPIC_TO_OPENAI;
  return null;
}
