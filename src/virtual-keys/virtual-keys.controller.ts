import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { Actor } from '../admin/admin-actor.decorator';
import { AdminApi, AdminErrors } from '../admin/admin-errors.decorator';
import type { AdminActor } from '../admin/admin-auth.guard';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import {
  CreateVirtualKeyDto,
  ListVirtualKeysQueryDto,
  UpdateVirtualKeyDto,
  VirtualKeyPageView,
  VirtualKeyView,
  VirtualKeyWithTokenView,
} from './dto/virtual-key.dto';
import { KEY_ID_FORMAT, KEY_ID_PATTERN } from './domain/virtual-key';
import { toVirtualKeyView } from './virtual-key.mapper';
import { VirtualKeysService } from './virtual-keys.service';

function checkId(id: string): string {
  if (!KEY_ID_PATTERN.test(id)) throw new GatewayError(ErrorCode.InvalidRequest, `key id must be ${KEY_ID_FORMAT}`, 'id');
  return id;
}

@ApiTags('virtual keys')
@AdminApi()
@Controller('admin/keys')
export class VirtualKeysController {
  constructor(private readonly service: VirtualKeysService) {}

  @Get()
  @ApiOperation({ summary: 'List virtual keys (filters, cursor paging by id)' })
  @ApiOkResponse({ type: VirtualKeyPageView })
  @AdminErrors(400)
  async list(@Query() query: ListVirtualKeysQueryDto): Promise<VirtualKeyPageView> {
    const page = await this.service.list(
      {
        tenantId: query.tenant_id,
        projectId: query.project_id,
        userId: query.user_id,
        enabled: query.enabled === undefined ? undefined : query.enabled === 'true',
      },
      query.limit ?? 100,
      query.cursor ?? null,
    );
    return { items: page.items.map(toVirtualKeyView), next_cursor: page.nextCursor };
  }

  @Post()
  @ApiOperation({ summary: 'Create a virtual key; the token is returned in this response only' })
  @ApiCreatedResponse({ type: VirtualKeyWithTokenView })
  @AdminErrors(400, 403, 409, 413)
  async create(@Body() dto: CreateVirtualKeyDto, @Actor() actor: AdminActor): Promise<VirtualKeyWithTokenView> {
    const { key, token } = await this.service.create(dto, actor);
    return { ...toVirtualKeyView(key), token };
  }

  @Get(':id')
  @ApiOperation({ summary: 'Read one virtual key' })
  @ApiParam({ name: 'id', example: 'search-prod' })
  @ApiOkResponse({ type: VirtualKeyView })
  @AdminErrors(400)
  async get(@Param('id') id: string): Promise<VirtualKeyView> {
    return toVirtualKeyView(await this.service.get(checkId(id)));
  }

  @Patch(':id')
  @ApiOperation({ summary: 'Change some fields of a virtual key (null clears a nullable field)' })
  @ApiParam({ name: 'id', example: 'search-prod' })
  @ApiOkResponse({ type: VirtualKeyView })
  @AdminErrors(400, 403, 413)
  async update(@Param('id') id: string, @Body() dto: UpdateVirtualKeyDto, @Actor() actor: AdminActor): Promise<VirtualKeyView> {
    return toVirtualKeyView(await this.service.update(checkId(id), dto, actor));
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a virtual key; its token stops working at once' })
  @ApiParam({ name: 'id', example: 'search-prod' })
  @ApiNoContentResponse({ description: 'Deleted' })
  @AdminErrors(400, 403)
  async delete(@Param('id') id: string, @Actor() actor: AdminActor): Promise<void> {
    await this.service.delete(checkId(id), actor);
  }

  @Post(':id/rotate')
  @HttpCode(200)
  @ApiOperation({ summary: 'Issue a new token; the old one stops working at once' })
  @ApiParam({ name: 'id', example: 'search-prod' })
  @ApiOkResponse({ type: VirtualKeyWithTokenView })
  @AdminErrors(400, 403)
  async rotate(@Param('id') id: string, @Actor() actor: AdminActor): Promise<VirtualKeyWithTokenView> {
    const { key, token } = await this.service.rotate(checkId(id), actor);
    return { ...toVirtualKeyView(key), token };
  }
}
