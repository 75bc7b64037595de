// The SIGKILL test's child: writes random runs of sectors to a disk image
// until it is killed, with a flush now and then. Prints "writing" once the
// image is open. Usage: random-writer.ts IMAGE SEED
import { openDisk } from '../../../src/storage/block-backend.ts';
import { fillSectors, SECTOR } from './crash-sectors.ts';
import { randomInt, seededRandom } from './images.ts';

const [path, seedText] = process.argv.slice(2);
const disk = openDisk(path!);
const random = seededRandom(Number(seedText));
const sectors = disk.size / SECTOR;
process.stdout.write('writing\n');
for (let sequence = 1; ; sequence++) {
  const count = 1 + randomInt(random, 24);
  const first = randomInt(random, sectors - count + 1);
  const data = new Uint8Array(count * SECTOR);
  fillSectors(data, first, sequence);
  disk.write(first * SECTOR, data);
  if (sequence % 100 === 0) disk.flush();
}
