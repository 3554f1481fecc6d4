import { LoggerService } from '@nestjs/common';
import pino, { DestinationStream, Logger as Pino } from 'pino';
import pretty from 'pino-pretty';

/** Secrets that might slip into a message: virtual keys, bearer credentials, passwords in URLs. */
const SECRET_PATTERNS: Array<[RegExp, string]> = [
  [/sk-ditto-[A-Za-z0-9]+/g, 'sk-ditto-***'],
  [/(bearer\s+)[^\s"',]+/gi, '$1***'],
  [/(\/\/[^/\s:@]*:)[^@\s/]+@/g, '$1***@'],
];

/**
 * stdout, one write per event-loop turn: lines logged while handling a turn's I/O (an access line per
 * request, under load many per turn) are joined and written together from setImmediate. A write per
 * line made log output the largest single cost of a proxied request: synchronously a syscall each, and
 * through sonic-boom's asynchronous mode a thread-pool round trip each (docs/benchmarks.md). Nothing
 * waits for volume: a lone line goes out at the end of its turn. `flush()` writes at once (before exit).
 */
export class TurnBatchedStdout implements DestinationStream {
  private lines: string[] = [];
  private scheduled = false;

  constructor(private readonly out: { write(text: string): unknown } = process.stdout) {}

  write(line: string): void {
    this.lines.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(done?: () => void): void {
    this.scheduled = false;
    if (this.lines.length > 0) {
      const text = this.lines.length === 1 ? this.lines[0] : this.lines.join('');
      this.lines = [];
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
    this.destination = destination ?? (format === 'pretty' ? pretty({ colorize: process.stdout.isTTY, translateTime: 'SYS:standard', messageKey: 'msg' }) : new TurnBatchedStdout());
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
