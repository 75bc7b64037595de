// Cuts a QMP client's byte stream into JSON texts the way QEMU's JSON
// streamer does: a message ends where its braces and brackets balance (not at
// a newline), so `{"execute":` and `"stop"}` may arrive in separate reads,
// and an unclosed `{` waits for the rest. A top-level scalar ("3") ends at
// the next whitespace or structural character.
//
// Recovery (docs/interop/qmp-spec.rst, "Forcing the JSON parser into known
// state"): a byte 0xFE or 0xFF, which never occurs in UTF-8, throws away
// whatever was pending. A message that grows past the size or nesting limit
// is thrown away with an error instead of growing without bound.
//
// The splitter only frames; JSON.parse judges each text afterwards.

export type SplitResult = { text: string } | { error: string };

/** Far above any QMP command; QEMU's own limit is on tokens (64 MiB). */
export const MAX_MESSAGE_BYTES = 1024 * 1024;
/** QEMU's MAX_NESTING. */
export const MAX_NESTING = 1024;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

function isWhitespace(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
}

export class JsonSplitter {
  private pending: number[] = [];
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** A top-level scalar (number, true, garbage) is being collected. */
  private inScalar = false;
  /** The current message went over a limit: skip until it ends, then report. */
  private overLimit: string | null = null;

  /** Feeds bytes; returns every message (or framing error) that completed. */
  push(chunk: Uint8Array): SplitResult[] {
    const results: SplitResult[] = [];
    for (const byte of chunk) this.step(byte, results);
    return results;
  }

  private step(byte: number, results: SplitResult[]): void {
    if (byte === 0xfe || byte === 0xff) {
      this.reset();
      return;
    }
    if (this.inScalar && (isWhitespace(byte) || byte === OPEN_BRACE || byte === OPEN_BRACKET || byte === QUOTE
      || byte === CLOSE_BRACE || byte === CLOSE_BRACKET)) {
      this.finish(results);
      if (isWhitespace(byte)) return;
    }
    if (this.depth === 0 && !this.inString && !this.inScalar) {
      if (isWhitespace(byte)) return;
      if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
        this.append(byte);
        this.finish(results);
        return;
      }
      if (byte !== OPEN_BRACE && byte !== OPEN_BRACKET && byte !== QUOTE) {
        this.inScalar = true;
        this.append(byte);
        return;
      }
    }
    this.append(byte);
    if (this.inScalar) return;
    if (this.inString) {
      if (this.escaped) this.escaped = false;
      else if (byte === BACKSLASH) this.escaped = true;
      else if (byte === QUOTE) {
        this.inString = false;
        if (this.depth === 0) this.finish(results);
      }
      return;
    }
    if (byte === QUOTE) this.inString = true;
    else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
      this.depth++;
      if (this.depth > MAX_NESTING) this.overLimit ??= 'JSON nesting depth limit exceeded';
    } else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
      this.depth--;
      if (this.depth === 0) this.finish(results);
    }
  }

  private append(byte: number): void {
    if (this.overLimit !== null) return;
    if (this.pending.length >= MAX_MESSAGE_BYTES) {
      this.overLimit = 'JSON message size limit exceeded';
      this.pending = [];
      return;
    }
    this.pending.push(byte);
  }

  private finish(results: SplitResult[]): void {
    if (this.overLimit !== null) results.push({ error: this.overLimit });
    else results.push({ text: Buffer.from(this.pending).toString('utf8') });
    this.reset();
  }

  private reset(): void {
    this.pending = [];
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
    this.inScalar = false;
    this.overLimit = null;
  }
}
