// Builds the firmware guests and the C baseline runner once per test run.
import { buildArtifacts } from '../bench/lib/artifacts.ts';

export default function setup(): void {
  buildArtifacts();
}
