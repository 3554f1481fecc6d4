import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadAppConfig } from '../../src/app-config';
import { storageCandidates } from '../../src/storage/storage-selection';

/**
 * The deployment files (Dockerfile, .dockerignore, docker-compose.yml, deploy/nginx.conf) checked
 * without a Docker engine: what `docker build` and `docker compose --profile … up` would trip over, and
 * the properties docs/deployment.md promises (non-root, health checks, no silent storage fallback,
 * streaming through the load balancer, POSTs never replayed).
 */

const ROOT = path.resolve(__dirname, '../..');
const read = (file: string): string => readFileSync(path.join(ROOT, file), 'utf8');

/** The shared stores: each is a compose service and a profile of the same name, and a STORAGE_BACKEND value. */
const STORE_PROFILES = ['redis', 'postgres', 'mongodb'] as const;
const REPLICAS = ['gateway-1', 'gateway-2'];

// --- small helpers ----------------------------------------------------------------------------------

/** Glob (`*`, `?`, `**`) to an anchored regular expression over '/'-separated relative paths. */
function globToRegExp(glob: string): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*' && glob[i + 1] === '*') {
      const slashAfter = glob[i + 2] === '/';
      out += slashAfter ? '(?:.*/)?' : '.*';
      i += slashAfter ? 2 : 1;
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

/** .dockerignore semantics: the last matching pattern wins; a pattern also matches everything below a matching directory. */
function dockerignore(text: string): (relativePath: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = path.posix.normalize((negate ? l.slice(1) : l).trim().replace(/^\/+/, '')).replace(/\/+$/, '');
      return { negate, re: globToRegExp(pattern) };
    });
  return (relativePath) => {
    const parts = relativePath.split('/');
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const rule of rules) if (candidates.some((c) => rule.re.test(c))) excluded = !rule.negate;
    return excluded;
  };
}

function walk(dir: string): string[] {
  const abs = path.join(ROOT, dir);
  if (!existsSync(abs)) return [];
  return readdirSync(abs, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(`${dir}/${e.name}`) : [`${dir}/${e.name}`],
  );
}

interface Instruction {
  keyword: string;
  args: string;
}
interface Stage {
  name: string | null;
  from: string;
  instructions: Instruction[];
}

/** Dockerfile → stages of instructions (comments dropped, `\` continuations joined). */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (!line && !current)) continue;
    if (line.endsWith('\\')) current += `${line.slice(0, -1)} `;
    else {
      logical.push(current + line);
      current = '';
    }
  }
  const stages: Stage[] = [];
  for (const line of logical.filter(Boolean)) {
    const [, keyword, args] = /^(\S+)\s*(.*)$/.exec(line)!;
    const upper = keyword.toUpperCase();
    if (upper === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?/i.exec(args)!;
      stages.push({ from: m[1], name: m[2] ?? null, instructions: [] });
    } else if (stages.length > 0) stages[stages.length - 1].instructions.push({ keyword: upper, args: args.trim() });
  }
  return stages;
}

/** COPY/ADD arguments: flags, sources, destination (shell or JSON form). */
function parseCopy(args: string): { flags: Record<string, string>; sources: string[]; dest: string } {
  const flags: Record<string, string> = {};
  let rest = args;
  for (let m = /^--([\w-]+)(?:=(\S+))?\s+/.exec(rest); m; m = /^--([\w-]+)(?:=(\S+))?\s+/.exec(rest)) {
    flags[m[1]] = m[2] ?? 'true';
    rest = rest.slice(m[0].length);
  }
  const words: string[] = rest.startsWith('[') ? JSON.parse(rest) : rest.split(/\s+/);
  return { flags, sources: words.slice(0, -1), dest: words[words.length - 1] };
}

const instructions = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);
/** Commands of a stage's RUN instructions, split at `&&`. */
const runCommands = (stage: Stage) =>
  instructions(stage, 'RUN').flatMap((i) => i.args.split('&&').map((c) => c.replace(/\s+/g, ' ').trim()));

/** Compose interpolation with `${VAR}`, `${VAR:-default}`, `${VAR-default}` (nested), `$VAR` and `$$`. */
function interpolate(text: string, vars: Record<string, string>): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('$$', i)) {
      out += '$';
      i += 2;
    } else if (text.startsWith('${', i)) {
      let depth = 1;
      let j = i + 2;
      while (j < text.length && depth > 0) {
        if (text.startsWith('${', j)) {
          depth++;
          j += 2;
        } else {
          if (text[j] === '}') depth--;
          j++;
        }
      }
      const body = text.slice(i + 2, j - 1);
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([\s\S]*))?$/.exec(body);
      if (!m) throw new Error(`unsupported interpolation \${${body}}`);
      const [, name, op, fallback] = m;
      const value = vars[name];
      const unset = value === undefined || (op === ':-' && value === '');
      out += unset && op ? interpolate(fallback, vars) : (value ?? '');
      i = j;
    } else if (text[i] === '$' && /[A-Za-z_]/.test(text[i + 1] ?? '')) {
      const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i + 1))![0];
      out += vars[name] ?? '';
      i += 1 + name.length;
    } else out += text[i++];
  }
  return out;
}

/** Every variable name interpolated anywhere in a parsed compose document (keys and values). */
function interpolatedNames(node: unknown, names = new Set<string>()): Set<string> {
  if (typeof node === 'string') {
    for (const m of node.replace(/\$\$/g, '').matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) names.add(m[1]);
  } else if (Array.isArray(node)) node.forEach((n) => interpolatedNames(n, names));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      interpolatedNames(k, names);
      interpolatedNames(v, names);
    }
  }
  return names;
}

interface NginxDirective {
  name: string;
  args: string[];
  block?: NginxDirective[];
}

/** nginx configuration → directive tree (comments dropped, quoted strings kept as one argument). */
function parseNginx(text: string): NginxDirective[] {
  const tokens = [...text.matchAll(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|#[^\n]*|[{};]|[^\s{};"'#]+/g)]
    .map((m) => m[0])
    .filter((t) => !t.startsWith('#'));
  let pos = 0;
  const block = (): NginxDirective[] => {
    const out: NginxDirective[] = [];
    while (pos < tokens.length && tokens[pos] !== '}') {
      const words: string[] = [];
      while (!['{', ';', '}'].includes(tokens[pos])) words.push(tokens[pos++].replace(/^["']|["']$/g, ''));
      const directive: NginxDirective = { name: words[0], args: words.slice(1) };
      if (tokens[pos++] === '{') {
        directive.block = block();
        pos++; // '}'
      }
      out.push(directive);
    }
    return out;
  };
  return block();
}

const find = (directives: NginxDirective[] | undefined, name: string, ...args: string[]) =>
  (directives ?? []).filter((d) => d.name === name && args.every((a, i) => d.args[i] === a));

/** nginx sizes: 64m, 512k, 1g or bytes. */
function nginxBytes(size: string): number {
  const m = /^(\d+)([kmg]?)$/i.exec(size)!;
  return Number(m[1]) * { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
}

/** Compose durations: 30s, 1m30s, 500ms. */
function durationMs(value: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  for (const m of value.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(m[1]) * units[m[2]];
  return total;
}

/** Runs a health-check command (exec form) with PORT set; resolves to its exit code. */
function runHealthCheck(command: string[], port: number): Promise<number | null> {
  expect(command[0]).toBe('node'); // the test runs it with this process's Node (same major as the image)
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, command.slice(1), { env: { PORT: String(port) }, stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => resolve(code));
  });
}

// --- the files -----------------------------------------------------------------------------------------

const dockerfile = parseDockerfile(read('Dockerfile'));
const finalStage = dockerfile[dockerfile.length - 1];
const ignored = dockerignore(read('.dockerignore'));
const packageJson = JSON.parse(read('package.json'));
const compose = parseYaml(read('docker-compose.yml'));
const services: Record<string, any> = compose.services;
const envExample = new Set([...read('.env.example').matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));
const envExampleValues = (): Record<string, string> =>
  Object.fromEntries([...read('.env.example').matchAll(/^([A-Z][A-Z0-9_]*)=(.*)$/gm)].map((m) => [m[1], m[2]]));

/** The health check of the image, as an exec-form command. */
function imageHealthCheck(): string[] {
  const [healthcheck] = instructions(finalStage, 'HEALTHCHECK');
  expect(healthcheck).toBeDefined();
  const cmd = /\bCMD\s+(\[.*\])\s*$/.exec(healthcheck.args);
  expect(cmd).not.toBeNull();
  return JSON.parse(cmd![1]);
}

/** The environment a service gets for the given shell/.env variables (null = passed through only when set). */
function serviceEnv(service: any, vars: Record<string, string> = {}): Record<string, string | undefined> {
  const env = service.environment ?? {};
  expect(Array.isArray(env)).toBe(false); // map form: the checks below read it as one
  return Object.fromEntries(
    Object.entries(env).map(([k, v]) => [k, v === null ? vars[k] : interpolate(String(v), vars)]),
  );
}

/**
 * The environment a replica's process gets: `.env` through env_file, under the service's `environment`
 * interpolated from the shell and `.env` (the shell wins), as Compose builds it.
 */
function containerEnv(service: any, dotEnv: Record<string, string>, shell: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { ...dotEnv };
  for (const [k, v] of Object.entries(serviceEnv(service, { ...dotEnv, ...shell }))) if (v !== undefined) env[k] = v;
  return env;
}

/** What `docker compose --profile …` enables: services without profiles, and those with an active one. */
const enabledServices = (profiles: string[]) =>
  Object.keys(services).filter((name) => {
    const own: string[] = services[name].profiles ?? [];
    return own.length === 0 || own.some((p) => profiles.includes(p));
  });

/** depends_on in long form: `{ service: { condition, required } }`. */
function dependencies(service: any): Record<string, { condition: string; required: boolean }> {
  const deps = service.depends_on ?? {};
  const entries: Array<[string, any]> = Array.isArray(deps) ? deps.map((d: string) => [d, {}]) : Object.entries(deps);
  return Object.fromEntries(
    entries.map(([name, d]) => [name, { condition: d.condition ?? 'service_started', required: d.required ?? true }]),
  );
}

// --- Dockerfile ------------------------------------------------------------------------------------------

describe('Dockerfile (e2e: deployment files)', () => {
  it('is multi-stage: the runtime stage starts from a fresh base and takes only build output from the build stage', () => {
    expect(dockerfile.length).toBeGreaterThanOrEqual(2);
    const build = dockerfile[0];
    expect(build.name).not.toBeNull();
    const fromBuild = instructions(finalStage, 'COPY').map((i) => parseCopy(i.args)).filter((c) => c.flags.from);
    expect(fromBuild.length).toBeGreaterThan(0);
    for (const copy of fromBuild) expect(copy.flags.from).toBe(build.name);
    // The runtime stage installs nothing itself: no compiler, no npm install.
    expect(runCommands(finalStage).filter((c) => /\bnpm (ci|install)\b|apt-get install/.test(c))).toEqual([]);
  });

  it('installs and builds exactly like CI: the install command of .ci/run, then `npm run build`, then prunes dev dependencies', () => {
    const ciInstall = /^\s*(npm ci\b[^|;&\n]*)/m.exec(read('.ci/run'));
    expect(ciInstall).not.toBeNull();
    const install = ciInstall![1].trim();
    // CI builds through `npm test` -> pretest; the image runs the same build script.
    expect(packageJson.scripts.pretest).toContain('npm run build');

    const commands = runCommands(dockerfile[0]);
    const at = (command: string) => commands.indexOf(command);
    expect(at(install)).toBeGreaterThanOrEqual(0);
    expect(at('npm run build')).toBeGreaterThan(at(install));
    const prune = commands.findIndex((c) => /^npm prune\b.*--omit=dev/.test(c));
    expect(prune).toBeGreaterThan(at('npm run build'));
    // The build stage must not set NODE_ENV=production: `npm ci` would leave out the compiler.
    expect(instructions(dockerfile[0], 'ENV').map((i) => i.args).join(' ')).not.toMatch(/NODE_ENV\s*=?\s*production/);
  });

  it('copies from the context only files that exist and are not excluded by .dockerignore, and all that the build reads', () => {
    const copied: string[] = [];
    for (const stage of dockerfile) {
      for (const i of [...instructions(stage, 'COPY'), ...instructions(stage, 'ADD')]) {
        const copy = parseCopy(i.args);
        if (copy.flags.from) continue;
        for (const source of copy.sources) {
          const relative = path.posix.normalize(source).replace(/\/+$/, '');
          expect({ source, exists: existsSync(path.join(ROOT, relative)) }).toEqual({ source, exists: true });
          expect({ source, excluded: ignored(relative) }).toEqual({ source, excluded: false });
          copied.push(relative);
        }
      }
    }
    // What `npm run build` reads: tsconfig.build.json's files, the assets copied beside them, the script
    // that copies them, and the install inputs. Each must be copied and be in the context.
    const tsconfig = JSON.parse(read('tsconfig.build.json'));
    const include: RegExp[] = tsconfig.include.map(globToRegExp);
    const exclude: RegExp[] = (tsconfig.exclude ?? []).map(globToRegExp);
    const roots = [...new Set<string>(tsconfig.include.map((g: string) => g.split('/')[0]))];
    const sources = roots
      .flatMap(walk)
      .filter((f) => include.some((re) => re.test(f)) && !exclude.some((re) => re.test(f)));
    const assets = walk('src').filter((f) => /\.(lua|sql)$/.test(f));
    const buildScripts = [...String(packageJson.scripts.build).matchAll(/node (\S+\.js)/g)].map((m) => m[1]);
    // `nest build` reads nest-cli.json (the tsconfig it uses, and the assets it copies).
    if (/\bnest build\b/.test(packageJson.scripts.build)) buildScripts.push('nest-cli.json');
    const needed = [...sources, ...assets, ...buildScripts, 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json'];
    expect(sources.length).toBeGreaterThan(10);
    expect(assets.length).toBeGreaterThan(0);
    const missing = needed.filter((f) => ignored(f) || !copied.some((c) => f === c || f.startsWith(`${c}/`)));
    expect(missing).toEqual([]);
  });

  it('.dockerignore keeps secrets, local state and host build output out of the context', () => {
    for (const file of ['.env', 'data/ditto.sqlite', 'node_modules/pg/package.json', 'dist/src/main.js', '.git/config', 'reports/jest.json']) {
      expect({ file, excluded: ignored(file) }).toEqual({ file, excluded: true });
    }
  });

  it('runs the compiled server as a non-root user, with production settings and its state under the /data volume', () => {
    const users = instructions(finalStage, 'USER');
    expect(users.length).toBeGreaterThan(0);
    expect(users[users.length - 1].args).not.toMatch(/^(root|0)(:|$)/);

    // CMD runs the file tsc emits for src/main.ts (outDir + path relative to rootDir), as `npm start` does.
    const tsconfig = { ...JSON.parse(read('tsconfig.json')).compilerOptions, ...JSON.parse(read('tsconfig.build.json')).compilerOptions };
    const main = path.posix.join(tsconfig.outDir, path.posix.relative(tsconfig.rootDir, 'src/main.ts')).replace(/\.ts$/, '.js');
    const [cmd] = instructions(finalStage, 'CMD');
    expect(JSON.parse(cmd.args)).toEqual(['node', main]);
    expect(packageJson.scripts.start).toBe(`node ${main}`);
    // …and the runtime stage takes that file from the build stage's working directory.
    const buildDir = instructions(dockerfile[0], 'WORKDIR').pop()!.args;
    const fromBuild = instructions(finalStage, 'COPY').flatMap((i) => parseCopy(i.args).sources);
    expect(fromBuild.some((s) => `${buildDir}/${main}`.startsWith(`${s.replace(/\/+$/, '')}/`))).toBe(true);

    const env = instructions(finalStage, 'ENV').map((i) => i.args).join(' ');
    expect(env).toMatch(/NODE_ENV=production/);
    // SQLite and the state file land on the volume: with the image's values, and with the relative
    // defaults of .env.example (an env file copied from it), resolved from WORKDIR through `ln -s` links.
    const volumes = instructions(finalStage, 'VOLUME').map((i) => i.args.replace(/[[\]"]/g, '').trim());
    const workdir = instructions(finalStage, 'WORKDIR').pop()!.args;
    const links = runCommands(finalStage).flatMap((c) => [...c.matchAll(/ln -s (\S+) (\S+)/g)].map((m) => [m[2], m[1]]));
    const real = (file: string) => links.reduce((f, [link, target]) => (f.startsWith(`${link}/`) ? target + f.slice(link.length) : f), file);
    const example = envExampleValues();
    for (const variable of ['SQLITE_PATH', 'STATE_FILE']) {
      for (const value of [new RegExp(`${variable}=(\\S+)`).exec(env)?.[1] ?? '', example[variable]]) {
        const file = real(path.posix.resolve(workdir, value));
        expect({ variable, value, inVolume: volumes.some((v) => file.startsWith(`${v}/`)) }).toEqual({ variable, value, inVolume: true });
      }
    }
    expect(instructions(finalStage, 'EXPOSE').map((i) => i.args)).toContain('8080');
    expect(instructions(finalStage, 'STOPSIGNAL').map((i) => i.args)).toEqual(['SIGTERM']);
  });

  it("health check probes /health on PORT with the image's Node: exit 0 when it answers 200, 1 when 503", async () => {
    const command = imageHealthCheck();
    expect(command.join(' ')).toContain('/health');
    const paths: string[] = [];
    const listen = async (status: number) => {
      const server = createServer((req, res) => {
        paths.push(req.url ?? '');
        res.writeHead(status).end();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return server;
    };
    const servers = await Promise.all([listen(200), listen(503)]);
    try {
      const codes = await Promise.all(servers.map((s) => runHealthCheck(command, (s.address() as AddressInfo).port)));
      expect(codes).toEqual([0, 1]);
    } finally {
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    }
    expect(paths).toEqual(['/health', '/health']);
  }, 10_000);
});

// --- docker-compose.yml -------------------------------------------------------------------------------

describe('docker-compose.yml (e2e: deployment files)', () => {
  it('defines the load balancer, two gateway replicas and the three shared stores', () => {
    for (const name of ['lb', ...REPLICAS, 'redis', 'postgres', 'mongodb']) expect(Object.keys(services)).toContain(name);
  });

  it('runs both replicas from the same image, built from the Dockerfile, with the same settings', () => {
    const [a, b] = REPLICAS.map((r) => services[r]);
    expect(a.build).toBeDefined();
    expect(b.build).toEqual(a.build);
    expect(b.image).toEqual(a.image);
    const context = typeof a.build === 'string' ? a.build : (a.build.context ?? '.');
    const file = typeof a.build === 'string' ? 'Dockerfile' : (a.build.dockerfile ?? 'Dockerfile');
    expect(path.resolve(ROOT, context, file)).toBe(path.join(ROOT, 'Dockerfile'));
    expect(b).toEqual(a);
  });

  it('publishes only the load balancer', () => {
    const publishing = Object.keys(services).filter((name) => (services[name].ports ?? []).length > 0);
    expect(publishing).toEqual(['lb']);
  });

  it('gives every service a health check, the replicas the same one as the image', () => {
    for (const [name, service] of Object.entries(services)) {
      const test = service.healthcheck?.test;
      expect({ name, test: Array.isArray(test) && ['CMD', 'CMD-SHELL'].includes(test[0]) }).toEqual({ name, test: true });
    }
    for (const replica of REPLICAS) expect(services[replica].healthcheck.test).toEqual(['CMD', ...imageHealthCheck()]);
  });

  it("makes each replica use exactly the active profile's store, with or without a .env copied from .env.example", () => {
    const port = Number(serviceEnv(services['gateway-1']).PORT);
    for (const profile of STORE_PROFILES) {
      // A GATEWAY_CONFIG line names the file explicitly, which must then exist in the container (mounted,
      // docs/deployment.md): that is the operator's file, not this check's.
      const { GATEWAY_CONFIG: _named, ...example } = envExampleValues();
      const scenarios: Array<[string, Record<string, string>, Record<string, string>]> = [
        ['no .env', {}, profile === 'redis' ? {} : { STORAGE_BACKEND: profile }],
        [
          '.env from .env.example',
          {
            ...example,
            // The user's edits: the store, and local-run settings that must not leak into the stack.
            COMPOSE_PROFILES: profile,
            STORAGE_BACKEND: profile === 'redis' ? 'auto' : profile,
            STORAGE_FALLBACK: 'true',
            PORT: '3000',
            HOST: '127.0.0.1',
          },
          {},
        ],
      ];
      for (const [scenario, dotEnv, shell] of scenarios) {
        for (const replica of REPLICAS) {
          // The gateway's own configuration loading and storage selection, on what the container gets.
          const config = loadAppConfig(containerEnv(services[replica], dotEnv, shell));
          const candidates = storageCandidates(config.storage.selection).map((c) => c.backend);
          expect({ profile, scenario, candidates }).toEqual({ profile, scenario, candidates: [profile] });
          const { redis, postgres, mongodb } = config.storage.options;
          const url = { redis: redis.url, postgres: postgres.dsn, mongodb: mongodb.uri }[profile]!;
          const host = new URL(url).hostname;
          expect({ profile, scenario, host, profiles: services[host]?.profiles }).toEqual({ profile, scenario, host, profiles: [profile] });
          expect({ scenario, port: config.server.port, host: config.server.host }).toEqual({ scenario, port, host: '0.0.0.0' });
        }
      }
    }
  });

  it('keeps the stores\' passwords and the replicas\' URLs in step when a password is set', () => {
    const vars = { POSTGRES_PASSWORD: 'pg-s3cret', MONGODB_PASSWORD: 'mongo-s3cret' };
    const env = serviceEnv(services['gateway-1'], vars);
    expect(new URL(env.POSTGRES_DSN!).password).toBe(serviceEnv(services.postgres, vars).POSTGRES_PASSWORD);
    expect(new URL(env.MONGODB_URI!).password).toBe(serviceEnv(services.mongodb, vars).MONGO_INITDB_ROOT_PASSWORD);
    expect(serviceEnv(services.postgres, vars).POSTGRES_PASSWORD).toBe('pg-s3cret');
  });

  it('is a valid project for every store profile and for none: each dependency exists and is enabled, or is optional', () => {
    const profiles = new Set(Object.values(services).flatMap((s: any) => s.profiles ?? []));
    for (const p of STORE_PROFILES) expect(profiles).toContain(p);

    for (const active of [[], ...STORE_PROFILES.map((p) => [p])]) {
      const enabled = enabledServices(active);
      for (const name of enabled) {
        for (const [dep, { condition, required }] of Object.entries(dependencies(services[name]))) {
          expect({ name, dep, exists: dep in services }).toEqual({ name, dep, exists: true });
          // Compose refuses a required dependency on a service its active profiles leave out.
          if (required) expect({ active, name, dep, enabled: enabled.includes(dep) }).toEqual({ active, name, dep, enabled: true });
          if (condition === 'service_healthy') expect(services[dep].healthcheck).toBeDefined();
        }
      }
      // With a store profile, the replicas wait for exactly that store to be healthy.
      if (active.length === 1) {
        for (const replica of REPLICAS) {
          const waitedFor = Object.entries(dependencies(services[replica]))
            .filter(([dep, d]) => enabled.includes(dep) && d.condition === 'service_healthy')
            .map(([dep]) => dep);
          expect(waitedFor).toEqual(active);
        }
      }
    }
    // The load balancer starts once both replicas answer their health check.
    expect(dependencies(services.lb)).toEqual(
      Object.fromEntries(REPLICAS.map((r) => [r, { condition: 'service_healthy', required: true }])),
    );
  });

  it('gives the replicas longer to stop than their shutdown grace period', () => {
    for (const replica of REPLICAS) {
      const grace = Number(serviceEnv(services[replica]).SHUTDOWN_GRACE_MS);
      expect(grace).toBeGreaterThan(0);
      expect(durationMs(String(services[replica].stop_grace_period))).toBeGreaterThan(grace);
    }
  });

  it('reads only variables documented in .env.example (or pending in the graceful-shutdown work)', () => {
    const names = interpolatedNames(compose);
    // Pass-through entries (`NAME:` without a value) read NAME from the shell or .env as well.
    for (const service of Object.values(services)) {
      for (const [name, value] of Object.entries(service.environment ?? {})) if (value === null) names.add(name);
    }
    expect(names.size).toBeGreaterThan(5);
    const undocumented = [...names].filter((name) => !envExample.has(name));
    expect(undocumented).toEqual([]);
  });
});

// --- deploy/nginx.conf ------------------------------------------------------------------------------

describe('deploy/nginx.conf (e2e: deployment files)', () => {
  const conf = parseNginx(read('deploy/nginx.conf'));
  const http = find(conf, 'http')[0]?.block;
  const servers = find(http, 'server').flatMap((s) => s.block ?? []);
  const proxying = find(servers, 'location').filter((l) => find(l.block, 'proxy_pass').length > 0);

  it('is the file the load balancer mounts as its configuration', () => {
    const mounts: string[] = services.lb.volumes;
    expect(mounts.some((m) => /^\.\/deploy\/nginx\.conf:\/etc\/nginx\/nginx\.conf(:ro)?$/.test(m))).toBe(true);
  });

  it('balances over both replicas, on the port they listen on', () => {
    expect(proxying.length).toBeGreaterThan(0);
    const port = serviceEnv(services['gateway-1']).PORT;
    for (const location of proxying) {
      const target = /^http:\/\/([\w-]+)$/.exec(find(location.block, 'proxy_pass')[0].args[0]);
      expect(target).not.toBeNull();
      const upstream = find(http, 'upstream', target![1])[0];
      expect(upstream).toBeDefined();
      // Round robin: no hash/ip_hash/sticky directive pins clients to a replica.
      expect(upstream.block!.filter((d) => /hash|sticky/.test(d.name))).toEqual([]);
      expect(find(upstream.block, 'server').map((s) => s.args[0]).sort()).toEqual(REPLICAS.map((r) => `${r}:${port}`));
    }
  });

  it('streams responses (buffering off) and passes a request id', () => {
    for (const location of proxying) {
      expect(find(location.block, 'proxy_buffering').map((d) => d.args)).toEqual([['off']]);
      expect(find(location.block, 'proxy_set_header').map((d) => d.args[0].toLowerCase())).toContain('x-request-id');
    }
  });

  it('retries the other replica only where no replica saw the request: never re-sends a POST', () => {
    for (const location of proxying) {
      const next = find(location.block, 'proxy_next_upstream').flatMap((d) => d.args);
      expect(next).toEqual(expect.arrayContaining(['error']));
      expect(next).not.toContain('non_idempotent');
      // 5xx answers come from the gateway after its own retries across backends: not replayed.
      expect(next.filter((a) => a.startsWith('http_'))).toEqual([]);
    }
  });

  it("accepts bodies up to the gateway's own limit, so the gateway answers 413 itself", () => {
    const values = envExampleValues();
    const limit = Math.max(Number(values.BODY_LIMIT_BYTES), Number(values.UPLOAD_LIMIT_BYTES));
    expect(limit).toBeGreaterThan(512 * 1024 * 1024 - 1);
    const max = find(http, 'client_max_body_size')[0] ?? find(servers, 'client_max_body_size')[0];
    expect(max).toBeDefined();
    expect(nginxBytes(max.args[0])).toBeGreaterThanOrEqual(limit);
  });
});
