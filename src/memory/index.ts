export { GuestMemory, GuestMemoryError, CHUNK_SIZE, type RamRange } from './guest-memory.ts';
