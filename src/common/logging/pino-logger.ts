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
 * stdout, asynchronous: lines written while a write is in flight go out together in the next one,
 * instead of a blocking write syscall per line (per-request access lines made synchronous writes a large
 * part of the gateway's CPU). Nothing waits for volume: a lone line is written at once. Flushed on exit.
 */
function stdoutBuffered(): DestinationStream {
  return pino.destination({ dest: 1, sync: false });
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

  /** `format` pretty: human-readable lines (LOG_FORMAT=pretty, for a terminal); json otherwise. */
  constructor(level: string, destination?: DestinationStream, format: 'json' | 'pretty' = 'json') {
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
      destination ?? (format === 'pretty' ? pretty({ colorize: process.stdout.isTTY, translateTime: 'SYS:standard', messageKey: 'msg' }) : stdoutBuffered()),
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
    if (typeof message === 'object' && message !== null) this.pino[level]({ context, ...message });
    else this.pino[level]({ context }, scrubSecrets(String(message)));
  }
}
