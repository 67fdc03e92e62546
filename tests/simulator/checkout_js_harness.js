// Runs the simulator's checkout.js against a minimal fake DOM and prints what the button did:
// the rendered element and the form it submitted. Input (stdin): {"script", "src", "config"}.
'use strict';
const vm = require('vm');

const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));

function makeElement(tag) {
  return {
    tagName: tag.toUpperCase(),
    attributes: {},
    children: [],
    style: {},
    listeners: {},
    setAttribute(name, value) { this.attributes[name] = String(value); },
    getAttribute(name) { return this.attributes[name]; },
    appendChild(child) { this.children.push(child); return child; },
    addEventListener(type, fn) { (this.listeners[type] = this.listeners[type] || []).push(fn); },
    submit() { submitted.push(this); },
  };
}

const submitted = [];
const container = makeElement('div');
const body = makeElement('body');
const document = {
  currentScript: input.src ? { src: input.src } : null,
  body,
  createElement: makeElement,
  querySelector: (selector) => (selector === '#amazon-pay-button-container' ? container : null),
};
const window = { location: { href: 'http://shop.example/checkout' } };
const context = vm.createContext({ window, document, URL });
vm.runInContext(input.script, context);

const handle = window.amazon.Pay.renderButton('#amazon-pay-button-container', input.config);
const button = container.children[0];
button.listeners.click.forEach((fn) => fn());
const form = submitted[0];
console.log(JSON.stringify({
  returnedElement: handle.element === button,
  button: {
    tag: button.tagName,
    type: button.type,
    text: button.textContent,
    id: button.id,
    attributes: button.attributes,
    style: button.style,
  },
  form: form && {
    method: form.method,
    action: form.action,
    inBody: body.children.includes(form),
    fields: Object.fromEntries(form.children.map((input) => [input.name, input.value])),
    types: form.children.map((input) => input.type),
  },
}));
