import { ApiParamOptions } from '@nestjs/swagger';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { Page } from '../common/page';
import { ListScopesQueryDto } from './dto/scope-limit.dto';
import { SCOPE_FORMAT } from './domain/scopes';
import { ScopeView } from './scope-limits';

const MAX_PAGE = 1000;

export const SCOPE_PARAM: ApiParamOptions = {
  name: 'scope',
  example: 'project:acme%2Fweb',
  description: `${SCOPE_FORMAT}; URL-encode the "/" of project and user scopes as %2F`,
};

export interface ScopePage {
  items: ScopeView[];
  next_cursor: string | null;
}

/** Runs a list query with the shared paging rules and answers the wire page. */
export async function pageOf(
  query: ListScopesQueryDto,
  list: (limit: number, cursor: string | null) => Promise<Page<ScopeView>>,
): Promise<ScopePage> {
  if (query.limit !== undefined && query.limit > MAX_PAGE) {
    throw new GatewayError(ErrorCode.InvalidRequest, `limit must not exceed ${MAX_PAGE}`, 'limit');
  }
  const page = await list(query.limit ?? 100, query.cursor ?? null);
  return { items: page.items, next_cursor: page.nextCursor };
}
