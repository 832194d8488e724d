/**
 * Content-Security-Policy shims for xterm.js. The policy allows no inline styles, but
 * xterm's DOM renderer adds <style> elements (cell sizes, theme): those get this response's
 * nonce (the server writes it into <meta name="csp-nonce"> and names it in style-src). It
 * also sets some cell colours with setAttribute('style'), which the policy blocks: that
 * becomes CSSOM (element.style), which CSP does not govern. Import before creating a Terminal.
 */
const styleNonce = document.querySelector<HTMLMetaElement>('meta[name="csp-nonce"]')?.content ?? '';

const createElement = Document.prototype.createElement;
Document.prototype.createElement = function (this: Document, tag: string, options?: ElementCreationOptions): HTMLElement {
  const el = createElement.call(this, tag, options);
  if (el instanceof HTMLStyleElement) el.nonce = styleNonce;
  return el;
} as typeof Document.prototype.createElement;

const setAttribute = Element.prototype.setAttribute;
Element.prototype.setAttribute = function (this: Element, name: string, value: string): void {
  if (name.toLowerCase() === 'style' && this instanceof HTMLElement) { this.style.cssText = value; return; }
  setAttribute.call(this, name, value);
};

export {};
