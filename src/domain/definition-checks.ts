// What `define` and `start` check beyond the XML itself: that the files a
// domain names are there, and that its lifecycle actions are ones a domain
// without a daemon can honour.
import { statSync } from 'node:fs';
import { InputError } from '../errors.ts';
import type { DomainDefinition } from './definition.ts';
import { domainRunOptions } from './run-options.ts';

function checkFile(definition: DomainDefinition, element: string, path: string): void {
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch {
    throw new InputError(`domain '${definition.name}': ${element} ${path}: no such file`);
  }
  if (!isFile) throw new InputError(`domain '${definition.name}': ${element} ${path}: not a file`);
}

/**
 * A domain's process is `tsvmm run`, which ends when the guest powers off or
 * crashes; with no daemon watching, nothing would start it again, so
 * on_poweroff and on_crash 'restart' are refused rather than ignored.
 * (on_reboot 'restart' is `tsvmm run --reboot restart`: the process boots the guest again.)
 */
export function checkDefinition(definition: DomainDefinition): void {
  for (const [element, action] of [['on_poweroff', definition.onPoweroff], ['on_crash', definition.onCrash]] as const) {
    if (action === 'restart') {
      throw new InputError(`domain '${definition.name}': <${element}>restart</${element}>: tsvmm runs domains without a daemon, so nothing could start it again; use destroy`);
    }
  }
  domainRunOptions(definition); // refuses what `tsvmm run` cannot be given
  const { kernel, initrd } = definition.os;
  if (kernel !== undefined) checkFile(definition, '<kernel>', kernel);
  if (initrd !== undefined) checkFile(definition, '<initrd>', initrd);
  for (const disk of definition.devices.disks) {
    // A storage volume is looked up when the domain starts (withVolumesResolved); its file is checked then.
    if (disk.volume && !disk.path) continue;
    checkFile(definition, `<disk> ${disk.target}: <source${disk.volume ? '' : ' file'}>`, disk.path);
  }
}
