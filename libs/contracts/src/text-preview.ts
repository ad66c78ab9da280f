/**
 * The first `maxUnits` UTF-16 code units of `text`, never ending inside a surrogate pair: a cut
 * through an emoji would leave a lone surrogate, which JSON encoders write as an escape that
 * Redis' cjson refuses to decode and UTF-8 encoders replace with U+FFFD.
 */
export function textPreview(text: string, maxUnits: number): string {
  if (text.length <= maxUnits) return text;
  const code = text.charCodeAt(maxUnits - 1);
  // A high surrogate as the last unit kept: its low half lies past the cut.
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? maxUnits - 1 : maxUnits);
}
