import { ApiParamOptions } from '@nestjs/swagger';
import { Page } from '../common/page';
import { PageQueryDto } from '../common/page-query.dto';
import { SCOPE_FORMAT } from './domain/scopes';
import { ScopeView } from './scope-limits';

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
  query: PageQueryDto,
  list: (limit: number, cursor: string | null) => Promise<Page<ScopeView>>,
): Promise<ScopePage> {
  const page = await list(query.limit ?? 100, query.cursor ?? null);
  return { items: page.items, next_cursor: page.nextCursor };
}
