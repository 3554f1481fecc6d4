import { ConfigurableModuleBuilder } from '@nestjs/common';
import { StorageOptions } from './ports/storage-backend';
import { StorageSelectionInput } from './storage-selection';

export interface StorageModuleOptions {
  selection: StorageSelectionInput;
  options: StorageOptions;
}

export const { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN: STORAGE_MODULE_OPTIONS } =
  new ConfigurableModuleBuilder<StorageModuleOptions>().setClassMethodName('forRoot').build();
