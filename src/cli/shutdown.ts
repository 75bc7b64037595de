// What a signal or Ctrl-A p does to a running guest. The first SIGTERM (what
// `systemctl stop` and `kill` send) presses the ACPI power button, so the
// guest shuts down cleanly and tsvmm ends with the guest's own status; a guest
// that has not powered off within the timeout is stopped. A second SIGTERM, or
// any SIGINT, stops the guest at once. A guest without ACPI (a flat binary)
// has no button: SIGTERM stops it at once. (QEMU stops on the first SIGTERM;
// libvirt's `virsh shutdown` presses the button through QMP instead.)

export interface PowerControls {
  /** Presses the ACPI power button; false when the guest has none. */
  pressPowerButton(): boolean;
  /** The same, to end the VM: the power-off that follows is not restarted (--poweroff restart). */
  powerDownToEnd(): boolean;
  /** Stops the guest at once. */
  stop(): void;
  /** Tells the user what is happening (one line). */
  say(line: string): void;
}

export const DEFAULT_SHUTDOWN_TIMEOUT_S = 30;

export class ShutdownPolicy {
  /** The signal that stopped the guest, for the exit status (128 + its number). */
  stoppedBy: NodeJS.Signals | null = null;
  /** Set when the guest ignored the power button for the whole timeout. */
  timedOut = false;
  private terminating = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly controls: PowerControls, private readonly timeoutMs: number) {}

  onSignal(signal: NodeJS.Signals): void {
    if (signal === 'SIGTERM' && !this.terminating && this.controls.powerDownToEnd()) {
      this.terminating = true;
      const seconds = this.timeoutMs / 1000;
      this.controls.say(`tsvmm: SIGTERM: pressed the ACPI power button; the guest has ${seconds} s to power off (SIGINT or a second SIGTERM stops it now)`);
      this.timer = setTimeout(() => {
        this.timer = null;
        this.timedOut = true;
        this.controls.say(`tsvmm: the guest did not power off within ${seconds} s of the power button: stopping it`);
        this.stop('SIGTERM');
      }, this.timeoutMs);
      return;
    }
    this.stop(signal);
  }

  /** Ctrl-A p: the button alone; the user decides what happens next. */
  onPowerKey(): void {
    this.controls.say(this.controls.pressPowerButton()
      ? 'tsvmm: pressed the ACPI power button'
      : 'tsvmm: this guest has no ACPI power button');
  }

  /** The guest ended: no timer may outlive it. */
  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private stop(signal: NodeJS.Signals): void {
    this.stoppedBy ??= signal;
    this.dispose();
    this.controls.stop();
  }
}
