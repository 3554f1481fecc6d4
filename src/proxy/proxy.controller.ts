import { All, Controller, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ProxyService } from './proxy.service';

/** `/v1/*`: everything is forwarded (not part of the admin OpenAPI document). */
@ApiExcludeController()
@Controller('v1')
export class ProxyController {
  constructor(private readonly proxy: ProxyService) {}

  @All('*')
  forward(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    return this.proxy.handle(request, reply);
  }
}
