// `tsvmm console NAME`: the terminal joined to a running domain's serial
// console socket, as virsh console does: raw keystrokes to the guest, its
// output to the terminal, and Ctrl-] detaches (the guest keeps running). The
// end of input detaches too, so a script can pipe a command in.
import { writeSync } from 'node:fs';
import { connect } from 'node:net';
import { InputError } from '../errors.ts';

/** Ctrl-], virsh's default escape character. */
const ESCAPE = 0x1d;

export interface ConsoleStreams {
  input: NodeJS.ReadStream;
  output: NodeJS.WriteStream;
}

/** Attaches until Ctrl-], the end of input, or the domain's end. */
export async function attachConsole(name: string, socketPath: string, streams: ConsoleStreams = { input: process.stdin, output: process.stdout }): Promise<void> {
  const socket = connect(socketPath);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', (e: NodeJS.ErrnoException) => reject(new InputError(`domain '${name}': cannot attach to its console (${e.code ?? e.message})`)));
  });
  writeSync(1, `Connected to domain '${name}'\nEscape character is ^] (Ctrl + ])\n`);
  const { input, output } = streams;
  const raw = input.isTTY;
  if (raw) input.setRawMode(true);
  await new Promise<void>((resolve) => {
    let detached = false;
    const detach = () => {
      if (detached) return;
      detached = true;
      input.off('data', onInput).off('end', detach);
      if (raw) input.setRawMode(false);
      // Done with both: a paused stdin pipe would keep the process alive.
      input.destroy();
      socket.destroy();
      resolve();
    };
    const onInput = (chunk: Buffer) => {
      const escape = chunk.indexOf(ESCAPE);
      socket.write(escape < 0 ? chunk : chunk.subarray(0, escape));
      if (escape >= 0) detach();
    };
    socket.on('data', (bytes: Buffer) => output.write(bytes));
    socket.on('close', detach).on('error', detach);
    input.on('data', onInput).on('end', detach);
    input.resume();
  });
  // A terminal left in the guest's column: start the prompt on a new line, as virsh does.
  if (raw) writeSync(1, '\n');
}
