// A domain snapshot as libvirt's <domainsnapshot> XML (formatsnapshot),
// which `snapshot-dumpxml` prints: its name, state and creation time, where
// its memory is, and the domain's definition when it was taken.
import { escapeAttribute, escapeText } from './serialize.ts';

export interface SnapshotDescription {
  name: string;
  description?: string;
  state: 'running' | 'paused' | 'shutoff';
  /** Seconds since the epoch. */
  creationTime: number;
  /** The memory state file, or none for a snapshot of a shut-off domain. */
  memoryFile?: string;
  /** The domain's XML then (domainToXml). */
  domainXml: string;
}

export function snapshotToXml(snapshot: SnapshotDescription): string {
  const memory = snapshot.memoryFile !== undefined
    ? `<memory snapshot='external' file='${escapeAttribute(snapshot.memoryFile)}'/>`
    : "<memory snapshot='no'/>";
  return [
    '<domainsnapshot>',
    `  <name>${escapeText(snapshot.name)}</name>`,
    ...(snapshot.description !== undefined ? [`  <description>${escapeText(snapshot.description)}</description>`] : []),
    `  <state>${snapshot.state}</state>`,
    `  <creationTime>${snapshot.creationTime}</creationTime>`,
    `  ${memory}`,
    ...snapshot.domainXml.trimEnd().split('\n').map((line) => `  ${line}`),
    '</domainsnapshot>',
    '',
  ].join('\n');
}
