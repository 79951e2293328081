// Prompt cleaning before tokenization, matching the reference's `clean='whitespace'` path
// (wan/modules/tokenizers.py: whitespace_clean(basic_clean(text))):
//   basic_clean      = ftfy.fix_text(text), then html.unescape twice, then strip
//   whitespace_clean = collapse every run of whitespace (Python's `\s`) to one space, then strip
//
// ftfy.fix_text is a large heuristic library; this file ports the fixes it applies to ordinary
// prompts, each a small table or regex:
//   - HTML entities (ftfy unescapes them too, unless the text looks like HTML, then basic_clean does)
//   - terminal escape sequences removed (ESC [ ... letter)
//   - C1 control characters read as Windows-1252 (U+0096 -> en dash, ...)
//   - Latin ligatures expanded (U+FB01 -> "fi", ...)
//   - full-width and half-width forms to their normal width (U+FF21 -> "A"; U+3000 -> space)
//   - curly quotes uncurled (U+2018..U+201B, U+02BC -> '; U+201C..U+201F -> ")
//   - line breaks unified (CRLF, CR, U+2028, U+2029 -> LF)
//   - lone surrogates -> U+FFFD, then the invisible control characters ftfy removes
//   - NFC normalization
// Not ported: ftfy's mojibake repair (text that was UTF-8 decoded as Latin-1/Windows-1252, e.g.
// "cafÃ©"). Such prompts tokenize as written here; see docs/decisions.md.
import { decodeHTML } from 'entities';

/** Python's `str.isspace()` set (what `\s` matches in a Python 3 str regex and `str.strip()` removes). */
const PY_WHITESPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WHITESPACE_RUN = new RegExp(`[${PY_WHITESPACE}]+`, 'g');
const STRIP = new RegExp(`^[${PY_WHITESPACE}]+|[${PY_WHITESPACE}]+$`, 'g');

/** Python `str.strip()` with no argument. */
export function pyStrip(text: string): string {
  return text.replace(STRIP, '');
}

/** Python `html.unescape`: HTML5 named and numeric character references, semicolon optional where HTML allows. */
export function htmlUnescape(text: string): string {
  return text.includes('&') ? decodeHTML(text) : text;
}

const LIGATURES: Readonly<Record<string, string>> = {
  '\u0132': 'IJ',
  '\u0133': 'ij',
  '\u0149': '\u02bcn',
  '\u01f1': 'DZ',
  '\u01f2': 'Dz',
  '\u01f3': 'dz',
  '\u01c4': 'D\u017d',
  '\u01c5': 'D\u017e',
  '\u01c6': 'd\u017e',
  '\u01c7': 'LJ',
  '\u01c8': 'Lj',
  '\u01c9': 'lj',
  '\u01ca': 'NJ',
  '\u01cb': 'Nj',
  '\u01cc': 'nj',
  '\ufb00': 'ff',
  '\ufb01': 'fi',
  '\ufb02': 'fl',
  '\ufb03': 'ffi',
  '\ufb04': 'ffl',
  '\ufb05': '\u017ft',
  '\ufb06': 'st',
};
const LIGATURE_RE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');

/** Windows-1252 meanings of the C1 control range U+0080..U+009F (unassigned bytes stay as they are). */
const CP1252_C1 =
  '\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f' +
  '\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178';

// ESC [ parameters letter: colours and cursor movement pasted from a terminal.
// eslint-disable-next-line no-control-regex
const TERMINAL_ESCAPE = /\x1b\[[\d;]*[A-Za-z]/g;
// The invisible characters ftfy's remove_control_chars drops (tab, LF, FF and CR stay).
const CONTROL =
  // eslint-disable-next-line no-control-regex
  /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}]/gu;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** The subset of `ftfy.fix_text` described at the top of this file. */
export function fixText(text: string): string {
  let t = text;
  if (!t.includes('<')) t = htmlUnescape(t); // ftfy leaves text that looks like HTML alone
  t = t.replace(TERMINAL_ESCAPE, '');
  t = t.replace(/[\x80-\x9f]/g, (c) => CP1252_C1[c.charCodeAt(0) - 0x80]!);
  t = t.replace(LIGATURE_RE, (c) => LIGATURES[c]!);
  t = t.replace(/[\u3000\uff01-\uffef]/g, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')));
  t = t.replace(/[\u02bc\u2018-\u201b]/g, "'").replace(/[\u201c-\u201f]/g, '"');
  t = t.replace(/\r\n|[\r\u2028\u2029]/g, '\n');
  t = t.replace(LONE_SURROGATE, '\ufffd').replace(CONTROL, '');
  return t.normalize('NFC');
}

/** The reference's prompt cleaning (`clean='whitespace'`): what the UMT5 tokenizer sees. */
export function cleanPrompt(text: string): string {
  const basic = pyStrip(htmlUnescape(htmlUnescape(fixText(text))));
  return pyStrip(basic.replace(WHITESPACE_RUN, ' '));
}
