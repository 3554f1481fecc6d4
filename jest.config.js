/** Jest: SWC transpiles TypeScript (with decorator metadata for Nest); tsc does the type checking. */
// A few dependencies ship only ES modules, which Jest cannot require() on Node 20 (Node itself can):
// let SWC turn those into CommonJS too.
const ESM_ONLY = ['content-disposition'];
const transform = {
  '^.+\\.(ts|js)$': [
    '@swc/jest',
    {
      jsc: {
        parser: { syntax: 'typescript', decorators: true },
        transform: { legacyDecorator: true, decoratorMetadata: true },
        target: 'es2022',
      },
      module: { type: 'commonjs' },
    },
  ],
};
const common = {
  transform,
  transformIgnorePatterns: [`/node_modules/(?!(${ESM_ONLY.join('|')})/)`],
  testEnvironment: 'node',
  moduleFileExtensions: ['ts', 'js', 'json'],
  // Earlier builds the bench exports there (its own package.json each) are not this project's modules.
  modulePathIgnorePatterns: ['<rootDir>/.cache/'],
};

// The suites that use real services: their global setup checks PostgreSQL and Redis (one line and a
// stop when one is missing), creates the test database, and provides MongoDB when it can
// (test/support/global-setup.ts). It runs once even though both projects name it.
const services = {
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
};

module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/src/**/*.spec.ts'] },
    { ...common, ...services, displayName: 'storage-contract', testMatch: ['<rootDir>/test/storage-contract/**/*.contract-spec.ts'] },
    { ...common, ...services, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.e2e-spec.ts'] },
  ],
};
