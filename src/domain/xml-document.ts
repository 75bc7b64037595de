// Reads an XML file into a DOM whose elements know their line, with
// @xmldom/xmldom: a conforming parser (one root, the five predefined entities
// and character references only, namespaces checked), so every malformed file
// is one error line with its position.
import { DOMParser, ParseError, type Element } from '@xmldom/xmldom';
import { InputError } from '../errors.ts';

const ELEMENT_NODE = 1;
const DOCUMENT_TYPE_NODE = 10;

/** The document's root element. Any complaint of the parser, even a warning, is an InputError "FILE:LINE: malformed XML: ...". */
export function readXmlDocument(text: string, fileName: string): Element {
  let complaint: string | null = null;
  const parser = new DOMParser({
    onError: (_level, message) => {
      complaint ??= message.split('\n')[0]!.replace(/!!/g, '').trim();
      // A warning too: xmldom goes on after one with a guess (`<a b>` becomes b="b"), which tsvmm must not act on.
      throw new Error(complaint);
    },
  });
  let document;
  try {
    document = parser.parseFromString(text, 'text/xml');
  } catch (error) {
    const line = error instanceof ParseError ? (error.locator as { lineNumber?: number } | undefined)?.lineNumber : undefined;
    const where = line ? `${fileName}:${line}` : fileName;
    throw new InputError(`${where}: malformed XML: ${complaint ?? (error as Error).message.split('\n')[0]}`);
  }
  for (let node = document.firstChild; node; node = node.nextSibling) {
    // A DTD could declare defaults and entities behind the reader's back; libvirt's files have none.
    if (node.nodeType === DOCUMENT_TYPE_NODE) throw new InputError(`${fileName}:${node.lineNumber ?? 1}: <!DOCTYPE>: tsvmm does not read DTDs`);
  }
  const root = document.documentElement;
  if (!root || root.nodeType !== ELEMENT_NODE) throw new InputError(`${fileName}: malformed XML: no root element`);
  return root;
}
