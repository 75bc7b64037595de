// Strict reading of one XML element: the parser asks for the attributes and
// children it knows, and finish() turns whatever was not asked for into an
// error naming it and its line. So nothing in a domain file is dropped without
// a word: tsvmm either honours it or refuses it.
import type { Attr, Element, Node } from '@xmldom/xmldom';
import { InputError } from '../errors.ts';

const ELEMENT_NODE = 1;
const TEXT_NODE = 3;
const CDATA_SECTION_NODE = 4;

/** Elements whose children are named alone in messages; deeper ones say where they are ("<target> in <interface>"). */
const TOP_LEVEL = new Set(['domain', 'devices']);

export class ElementReader {
  private readonly usedAttributes = new Set<string>();
  private readonly usedChildren = new Set<Node>();
  private textUsed = false;

  constructor(
    private readonly element: Element,
    private readonly fileName: string,
    private readonly parentName: string | null = null,
  ) {}

  get name(): string {
    return this.element.tagName;
  }

  get line(): number {
    return this.element.lineNumber ?? 1;
  }

  /** "<target>", or "<target> in <interface>" below the top level. */
  get label(): string {
    return this.parentName === null || TOP_LEVEL.has(this.parentName) ? `<${this.name}>` : `<${this.name}> in <${this.parentName}>`;
  }

  /** An InputError "FILE:LINE: <element>: message". */
  error(message: string, line = this.line): InputError {
    return new InputError(`${this.fileName}:${line}: ${this.label}: ${message}`);
  }

  attribute(name: string): string | undefined {
    this.usedAttributes.add(name);
    return this.element.hasAttribute(name) ? this.element.getAttribute(name)! : undefined;
  }

  requiredAttribute(name: string): string {
    const value = this.attribute(name);
    if (value === undefined) throw this.error(`needs the attribute ${name}='...'`);
    return value;
  }

  /** An attribute tsvmm honours with these values only; `why` says what it cannot do with the others. */
  choice<T extends string>(name: string, allowed: readonly T[], why: string): T | undefined {
    const value = this.attribute(name);
    if (value === undefined || (allowed as readonly string[]).includes(value)) return value as T | undefined;
    throw this.error(`${name}='${value}': ${why}`, this.attributeLine(name));
  }

  /** The one child of this name, if any (a second one is an error). */
  child(name: string): ElementReader | undefined {
    const [first, second] = this.children(name);
    if (second) throw second.error(`given twice (first at line ${first!.line})`);
    return first;
  }

  children(name: string): ElementReader[] {
    const found: ElementReader[] = [];
    for (let node = this.element.firstChild; node; node = node.nextSibling) {
      if (node.nodeType === ELEMENT_NODE && (node as Element).tagName === name) {
        this.usedChildren.add(node);
        found.push(new ElementReader(node as Element, this.fileName, this.name));
      }
    }
    return found;
  }

  /** The element's text (character data and CDATA), as written. */
  text(): string {
    this.textUsed = true;
    let text = '';
    for (let node = this.element.firstChild; node; node = node.nextSibling) {
      if (node.nodeType === TEXT_NODE || node.nodeType === CDATA_SECTION_NODE) text += node.nodeValue ?? '';
    }
    return text;
  }

  /** Refuses every attribute, child element and text that was not read. Comments carry nothing and pass. */
  finish(): void {
    for (let i = 0; i < this.element.attributes.length; i++) {
      const attribute = this.element.attributes.item(i)!;
      if (!this.usedAttributes.has(attribute.name)) {
        throw this.error(`${attribute.name}='${attribute.value}': tsvmm does not support this attribute`, attribute.lineNumber ?? this.line);
      }
    }
    for (let node = this.element.firstChild; node; node = node.nextSibling) {
      if (node.nodeType === ELEMENT_NODE && !this.usedChildren.has(node)) {
        throw new ElementReader(node as Element, this.fileName, this.name).error('tsvmm does not support it');
      }
      if ((node.nodeType === TEXT_NODE || node.nodeType === CDATA_SECTION_NODE) && !this.textUsed && node.nodeValue?.trim()) {
        // The node starts where the previous tag ended: count the line breaks before its first word.
        const leading = /^\s*/.exec(node.nodeValue)![0].split('\n').length - 1;
        throw this.error(`unexpected text "${node.nodeValue.trim().slice(0, 40)}"`, (node.lineNumber ?? this.line) + leading);
      }
    }
  }

  private attributeLine(name: string): number {
    const attribute: Attr | null = this.element.getAttributeNode(name);
    return attribute?.lineNumber ?? this.line;
  }
}
