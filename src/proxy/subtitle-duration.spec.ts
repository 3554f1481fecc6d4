import { SubtitleDuration } from './subtitle-duration';

function seconds(text: string, cut: number): number | undefined {
  const watcher = new SubtitleDuration();
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += cut) watcher.push(bytes.subarray(i, i + cut));
  return watcher.usage?.seconds;
}

describe('SubtitleDuration', () => {
  const srt = '1\n00:00:00,000 --> 00:00:04,200\nHello there.\n\n2\n00:00:04,200 --> 00:01:02,750\nGénéral Kenobi.\n';
  const vtt = 'WEBVTT\n\n00:00.000 --> 00:03.500\nHi\n\n00:03.500 --> 01:07.125\nBye\n';

  it.each([1, 3, 17, 4096])('reads the end of the last cue of SRT and WebVTT, cut anywhere (%i-byte chunks)', (cut) => {
    expect(seconds(srt, cut)).toBe(62.75);
    expect(seconds(vtt, cut)).toBe(67.125);
    expect(seconds('1\n01:00:00,000 --> 01:30:00,001\nlong\n', cut)).toBe(5400.001);
  });

  it('has no usage for plain text', () => {
    expect(seconds('just a transcript --> with an arrow', 4)).toBeUndefined();
  });
});
