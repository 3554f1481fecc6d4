import { Logger } from '@nestjs/common';
import { PinoLogger, TrustedLine } from './pino-logger';

function capture(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const logger = new PinoLogger(level, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

describe('PinoLogger', () => {
  it('writes a trusted line as the same JSON as any other line: level label, ISO time, context, fields', () => {
    const { logger, lines } = capture('info');
    logger.log(new TrustedLine({ msg: 'POST /v1/chat/completions 200', status: 200, cache: undefined }), 'Access');
    logger.log({ msg: 'plain', status: 201 }, 'Other');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toEqual({ level: 'info', time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/), context: 'Access', msg: 'POST /v1/chat/completions 200', status: 200 });
    expect(Object.keys(lines[0])).toEqual(Object.keys(lines[1]));
  });

  it('drops a trusted line below the configured level, and logs it through Nest at warn', () => {
    const { logger, lines } = capture('warn');
    logger.log(new TrustedLine({ msg: 'info line' }), 'Access');
    logger.warn(new TrustedLine({ msg: 'warn line' }), 'Access');
    expect(lines.map((l) => [l.level, l.msg])).toEqual([['warn', 'warn line']]);
  });

  it('still redacts secret-named fields of ordinary object messages', () => {
    const { logger, lines } = capture('info');
    Logger.overrideLogger(logger);
    new Logger('Ctx').log({ msg: 'x', authorization: 'Bearer sk-ditto-secret' });
    Logger.overrideLogger(false);
    expect(lines[0]).toMatchObject({ context: 'Ctx', authorization: '***' });
  });
});
