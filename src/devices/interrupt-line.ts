// A device's interrupt output. The machine connects it to the in-kernel
// PIC/IOAPIC (KVM_IRQ_LINE) or, in unit tests, to a recorder; the device only
// drives the level of its line.

/**
 * What the interrupt controller made of a rising edge: a new request; one
 * merged into the request the line already has pending (the guest has not
 * acknowledged it yet); or nothing (the input is masked, or no controller).
 */
export type EdgeOutcome = 'new' | 'coalesced' | 'ignored';

export interface InterruptLine {
  /** Drives the line high (asserted) or low. Repeating the current level is harmless. */
  setLevel(high: boolean): void;
  /** A rising then a falling edge (an edge-triggered input such as IRQ0). */
  pulse(): EdgeOutcome;
}

/** Records every level change (unit tests). */
export class RecordingLine implements InterruptLine {
  readonly levels: boolean[] = [];
  level = false;
  /** What pulse() reports, as a controller would (a test sets it). */
  outcome: EdgeOutcome = 'new';

  setLevel(high: boolean): void {
    this.levels.push(high);
    this.level = high;
  }

  pulse(): EdgeOutcome {
    this.setLevel(true);
    this.setLevel(false);
    return this.outcome;
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
