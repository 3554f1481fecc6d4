import { Usage, unitUsage } from './domain/usage';

/** A cue's timing line: `00:01:02,500 --> 00:01:04,000` (SRT) or `01:02.500 --> 01:04.000` (WebVTT, hours optional). */
const CUE_END = /-->\s*(?:(\d+):)?(\d{2}):(\d{2})[,.](\d{3})/g;
/** Bytes kept from one chunk to the next, so a timing line cut between chunks is still read. */
const TAIL_BYTES = 64;

/**
 * The audio seconds of an SRT or WebVTT transcript (whisper-1's `srt` and `vtt` response formats, which
 * carry no usage): the end of its last cue, read as the text streams past. The upstream bills the
 * audio's length; the last cue ends at most at the audio's end (trailing silence is not in it), so
 * this never charges more than was billed. Text without any cue (`text` format) has no usage.
 */
export class SubtitleDuration {
  private tail = '';
  private seconds: number | null = null;

  push(chunk: Buffer): Buffer {
    const text = this.tail + chunk.toString('latin1');
    for (const m of text.matchAll(CUE_END)) {
      const end = Number(m[1] ?? 0) * 3600 + Number(m[2]) * 60 + Number(m[3]) + Number(m[4]) / 1000;
      if (this.seconds === null || end > this.seconds) this.seconds = end;
    }
    this.tail = text.slice(-TAIL_BYTES);
    return chunk;
  }

  get usage(): Usage | null {
    return this.seconds === null ? null : unitUsage('seconds', this.seconds);
  }
}
