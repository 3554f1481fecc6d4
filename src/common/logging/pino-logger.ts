import { LoggerService } from '@nestjs/common';
import pino, { DestinationStream, Logger as Pino } from 'pino';
import pretty from 'pino-pretty';

/** Secrets that might slip into a message: virtual keys, bearer credentials, passwords in URLs. */
const SECRET_PATTERNS: Array<[RegExp, string]> = [
  [/sk-ditto-[A-Za-z0-9]+/g, 'sk-ditto-***'],
  [/(bearer\s+)[^\s"',]+/gi, '$1***'],
  [/(\/\/[^/\s:@]*:)[^@\s/]+@/g, '$1***@'],
];

/** How long a log line may wait for others to share its write. */
const LOG_BATCH_MS = 10;
/** Buffered text that is written at once, whatever the time. */
const LOG_BATCH_MAX_CHARS = 64 * 1024;

/**
 * stdout, written at most every LOG_BATCH_MS: lines logged meanwhile (an access line per request, under
 * load hundreds) are joined into one write. A write costs a syscall, and on a loaded machine one per
 * line, or even one per event-loop turn, was a visible part of a proxied request's CPU
 * (docs/benchmarks.md). A lone line goes out within LOG_BATCH_MS; 64 KiB of pending text goes out at
 * once. `flush()` writes at once (before exit).
 */
export class BatchedStdout implements DestinationStream {
  private lines: string[] = [];
  private chars = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly out: { write(text: string): unknown } = process.stdout) {}

  write(line: string): void {
    this.lines.push(line);
    this.chars += line.length;
    if (this.chars >= LOG_BATCH_MAX_CHARS) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), LOG_BATCH_MS);
  }

  flush(done?: () => void): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.lines.length > 0) {
      const text = this.lines.length === 1 ? this.lines[0] : this.lines.join('');
      this.lines = [];
      this.chars = 0;
      this.out.write(text);
    }
    done?.();
  }
}

/**
 * A log line whose fields the caller builds from data that never holds a secret (the access line):
 * PinoLogger writes it as one JSON object without pino's redaction and serialisation pass, which cost
 * ~4 µs of a proxied request's CPU (docs/benchmarks.md). Any other LoggerService logs the fields.
 */
export class TrustedLine {
  constructor(readonly fields: Record<string, unknown>) {}
}

export function scrubSecrets(text: string): string {
  return SECRET_PATTERNS.reduce((out, [pattern, replacement]) => out.replace(pattern, replacement), text);
}

/**
 * Nest's LoggerService over pino: JSON lines with the Nest context as `context`. Structured fields
 * named like secrets are censored by pino's redaction; free text is scrubbed of token-like strings.
 */
export class PinoLogger implements LoggerService {
  readonly pino: Pino;
  private readonly destination: DestinationStream;

  /** `format` pretty: human-readable lines (LOG_FORMAT=pretty, for a terminal); json otherwise. */
  constructor(level: string, destination?: DestinationStream, format: 'json' | 'pretty' = 'json') {
    this.destination = destination ?? (format === 'pretty' ? pretty({ colorize: process.stdout.isTTY, translateTime: 'SYS:standard', messageKey: 'msg' }) : new BatchedStdout());
    this.pino = pino(
      {
        level,
        base: undefined,
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
        redact: {
          paths: ['token', 'authorization', 'api_key', 'apiKey', '*.token', '*.authorization', '*.api_key', '*.apiKey', 'headers.authorization', 'headers["x-api-key"]', 'headers["x-admin-token"]'],
          censor: '***',
        },
      },
      this.destination,
    );
  }

  /** Writes out whatever is buffered (before process.exit). */
  flush(): void {
    this.pino.flush();
  }

  log(message: unknown, ...rest: unknown[]): void {
    this.write('info', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    // Nest passes (message, stack, context) for errors.
    const [stack, context] = rest.length >= 2 ? rest : [undefined, rest[0]];
    this.pino.error({ context, stack: typeof stack === 'string' ? scrubSecrets(stack) : undefined }, scrubSecrets(String(message)));
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.write('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.write('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.write('trace', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.write('fatal', message, rest);
  }

  private write(level: 'info' | 'warn' | 'debug' | 'trace' | 'fatal', message: unknown, rest: unknown[]): void {
    const context = rest.length > 0 ? rest[rest.length - 1] : undefined;
    if (message instanceof TrustedLine) {
      // The same JSON pino writes (level label, ISO time, context, then the fields).
      if (this.pino.isLevelEnabled(level)) this.destination.write(`${JSON.stringify({ level, time: new Date().toISOString(), context, ...message.fields })}\n`);
    } else if (typeof message === 'object' && message !== null) this.pino[level]({ context, ...message });
    else this.pino[level]({ context }, scrubSecrets(String(message)));
  }
}
