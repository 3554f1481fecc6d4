import { Controller, Get } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiProperty, ApiTags } from '@nestjs/swagger';
import { AdminApi } from '../admin/admin-errors.decorator';
import { ActiveStorage } from './active-storage';

class FallbackFailureDto {
  @ApiProperty({ example: 'redis' }) backend: string;
  @ApiProperty({ example: 'REDIS_URL redis://***@cache:6379: connect ECONNREFUSED 10.0.0.5:6379' }) error: string;
}

export class StorageInfoDto {
  @ApiProperty({ example: 'postgres', enum: ['memory', 'state', 'sqlite', 'postgres', 'mongodb', 'redis'] })
  backend: string;
  @ApiProperty({ example: 'POSTGRES_DSN', description: 'STORAGE_BACKEND, the variable that configured it, or default' })
  selected_by: string;
  @ApiProperty({ type: [FallbackFailureDto], description: 'Backends tried first that failed to initialise' })
  fallback_from: FallbackFailureDto[];
  @ApiProperty({ example: true, description: 'Whether the store answered a ping just now' })
  healthy: boolean;
  @ApiProperty({ example: { dsn: 'postgres://***@db:5432/ditto', pool: { min: 2, max: 10 } }, description: 'Secrets redacted' })
  details: Record<string, unknown>;
}

const PING_TIMEOUT_MS = 2000;

@ApiTags('storage')
@AdminApi()
@Controller()
export class StorageController {
  constructor(private readonly storage: ActiveStorage) {}

  @Get(['admin/storage', 'api/auth/storage-info'])
  @ApiOperation({ summary: 'Which storage backend is active, why, and what failed before it (docs/storage.md)' })
  @ApiOkResponse({ type: StorageInfoDto })
  async info(): Promise<StorageInfoDto> {
    const { backend, info } = this.storage;
    return {
      backend: info.backend,
      selected_by: info.selectedBy,
      fallback_from: info.fallbackFrom,
      healthy: await this.storage.isHealthy(PING_TIMEOUT_MS),
      details: backend.details(),
    };
  }
}
