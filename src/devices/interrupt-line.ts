// A device's interrupt output. The machine connects it to the in-kernel
// PIC/IOAPIC (KVM_IRQ_LINE) or, in unit tests, to a recorder; the device only
// drives the level of its line.

export interface InterruptLine {
  /** Drives the line high (asserted) or low. Repeating the current level is harmless. */
  setLevel(high: boolean): void;
}

/** Records every level change (unit tests). */
export class RecordingLine implements InterruptLine {
  readonly levels: boolean[] = [];
  level = false;

  setLevel(high: boolean): void {
    this.levels.push(high);
    this.level = high;
  }

  /** Rising edges seen so far: what an edge-triggered PIC input would count. */
  get risingEdges(): number {
    let edges = 0;
    let previous = false;
    for (const level of this.levels) {
      if (level && !previous) edges++;
      previous = level;
    }
    return edges;
  }
}
