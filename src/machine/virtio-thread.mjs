// Worker entry: a worker does not inherit the main thread's TypeScript
// loader, so register tsx here before loading the TypeScript body.
import { register } from 'tsx/esm/api';

register();
await import('./virtio-thread.ts');
