import { Inject, Injectable } from '@nestjs/common';
import { GATEWAY } from '../config/gateway.config';
import { BackendConfig, GatewayFile } from '../config/gateway-file';

/**
 * Picks the backends for a request (docs/configuration.md router): a key pinned to a backend uses only that one;
 * otherwise the exact model rule, else the longest matching `prefix*` rule, else `default_backends`.
 * Within the chosen list the weights pick the primary at random; the others follow in their listed
 * order as the fallbacks.
 */
export class BackendRoutes {
  private readonly byName: Map<string, BackendConfig>;
  private readonly exact = new Map<string, string[]>();
  private readonly prefixes: Array<{ prefix: string; backends: string[] }> = [];

  constructor(private readonly config: GatewayFile) {
    this.byName = new Map(config.backends.map((b) => [b.name, b]));
    for (const rule of config.router.rules) {
      if (rule.model.endsWith('*')) this.prefixes.push({ prefix: rule.model.slice(0, -1), backends: rule.backends });
      else if (!this.exact.has(rule.model)) this.exact.set(rule.model, rule.backends);
    }
    this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** Whether the model a request names changes where it goes (router rules, and the key is not pinned). */
  routesByModel(pinned: string | null): boolean {
    return pinned === null && (this.exact.size > 0 || this.prefixes.length > 0);
  }

  route(model: string | null, pinned: string | null, random = Math.random): BackendConfig[] {
    if (pinned !== null) {
      const backend = this.byName.get(pinned);
      return backend ? [backend] : [];
    }
    const names =
      (model !== null && (this.exact.get(model) ?? this.prefixes.find((p) => model.startsWith(p.prefix))?.backends)) ||
      (this.config.router.default_backends.length > 0 ? this.config.router.default_backends : this.config.backends.map((b) => b.name));
    const backends = names.map((n) => this.byName.get(n)).filter((b): b is BackendConfig => b !== undefined);
    return orderByWeight(backends, random);
  }
}

function orderByWeight(backends: BackendConfig[], random: () => number): BackendConfig[] {
  const total = backends.reduce((sum, b) => sum + b.weight, 0);
  if (backends.length < 2 || total === 0) return backends;
  let pick = random() * total;
  const primary = backends.find((b) => (pick -= b.weight) < 0) ?? backends[backends.length - 1];
  return [primary, ...backends.filter((b) => b !== primary)];
}

@Injectable()
export class BackendRouter extends BackendRoutes {
  constructor(@Inject(GATEWAY) gateway: GatewayFile) {
    super(gateway);
  }
}
