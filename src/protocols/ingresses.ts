import { ANTHROPIC_INGRESS } from './anthropic/anthropic-ingress';
import { GEMINI_INGRESS } from './gemini/gemini-ingress';
import type { Ingress } from './ingress';

/**
 * The API a canonical request URL speaks, when it is not OpenAI's (null): Anthropic's Messages API
 * (`/v1/messages…`), Google's Gemini API (everything under `/v1beta`).
 */
export function ingressFor(url: string): Ingress | null {
  const path = url.split('?')[0];
  if (path === '/v1beta' || path.startsWith('/v1beta/')) return GEMINI_INGRESS;
  if (path === '/v1/messages' || path.startsWith('/v1/messages/')) return ANTHROPIC_INGRESS;
  return null;
}

/**
 * The API a request target the front door could not take (not canonical: dot segments, encoded
 * separators…) most likely speaks, by its raw beginning, so that its refusal comes in that API's error
 * shape; null: OpenAI's. Looser than ingressFor: `/v1/messages%5c…` is still an Anthropic client's.
 */
export function protocolOfRawTarget(target: string): Ingress['protocol'] | null {
  if (target.startsWith('/v1beta')) return GEMINI_INGRESS.protocol;
  if (target.startsWith('/v1/messages')) return ANTHROPIC_INGRESS.protocol;
  return null;
}
