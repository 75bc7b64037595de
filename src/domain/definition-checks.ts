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
 * A domain's process is `tsvmm run`; with no daemon watching, a 'restart'
 * lifecycle action is the process booting the guest again (`--reboot`,
 * `--poweroff`, `--panic restart`). A crash is seen only through the panic
 * device: without one a panicking Linux just reboots (panic=-1), so
 * on_crash restart without <panic> would be a setting nothing acts on.
 */
export function checkDefinition(definition: DomainDefinition): void {
  if (definition.onCrash === 'restart' && !definition.devices.panic) {
    throw new InputError(`domain '${definition.name}': <on_crash>restart</on_crash> needs a <panic model='isa'/> device, through which the guest reports its crash`);
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
