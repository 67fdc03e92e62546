/*
 * Stand-in for Amazon's checkout.js, served by the offline Amazon Pay simulator.
 *
 * Defines window.amazon.Pay.renderButton(selector, config) (docs/amazon-pay-api.md section 3).
 * The button submits a top-level HTML form POST of createCheckoutSessionConfig to the simulator
 * (no fetch, so no CORS). Safe under a strict CSP: no eval, no inline handlers or styles.
 */
(function () {
  'use strict';

  var DEFAULT_ALGORITHM = 'AMZN-PAY-RSASSA-PSS';
  var FALLBACK_BASE = '__SIMULATOR_BASE__';

  // Where the simulator's pages live: the folder this script was loaded from, which carries a
  // path when the simulator is served under a prefix (the shop's offline mode in a container).
  function simulatorBase() {
    var script = document.currentScript;
    if (script && script.src) {
      try {
        return new URL('.', new URL(script.src, window.location.href)).href.replace(/\/$/, '');
      } catch (e) {
        /* fall through to the base the simulator wrote into this file */
      }
    }
    return FALLBACK_BASE;
  }

  var BASE = simulatorBase();

  function addField(form, name, value) {
    var input = document.createElement('input');
    input.type = 'hidden';
    input.name = name;
    input.value = value == null ? '' : String(value);
    form.appendChild(input);
  }

  function startCheckout(config, sessionConfig) {
    if (!sessionConfig || typeof sessionConfig.payloadJSON !== 'string') {
      throw new Error('amazon.Pay: createCheckoutSessionConfig.payloadJSON is required');
    }
    var form = document.createElement('form');
    form.method = 'POST';
    form.action = BASE + '/checkout/start';
    form.style.display = 'none';
    form.setAttribute('data-testid', 'amazon-pay-form');
    addField(form, 'payloadJSON', sessionConfig.payloadJSON);
    addField(form, 'signature', sessionConfig.signature);
    addField(form, 'publicKeyId', sessionConfig.publicKeyId || config.publicKeyId);
    addField(form, 'algorithm', sessionConfig.algorithm || DEFAULT_ALGORITHM);
    addField(form, 'merchantId', config.merchantId);
    addField(form, 'sandbox', config.sandbox === false ? 'false' : 'true');
    addField(form, 'productType', config.productType);
    addField(form, 'checkoutLanguage', config.checkoutLanguage);
    document.body.appendChild(form);
    form.submit();
  }

  function styleButton(button, color) {
    var colors = {
      Gold: ['#ffd814', '#111111'],
      LightGray: ['#e7e9ec', '#111111'],
      DarkGray: ['#444444', '#ffffff']
    };
    var pair = colors[color] || colors.Gold;
    var s = button.style;
    s.backgroundColor = pair[0];
    s.color = pair[1];
    s.border = '1px solid #8a6d00';
    s.borderRadius = '4px';
    s.padding = '0.6rem 1.2rem';
    s.font = 'bold 1rem system-ui, sans-serif';
    s.cursor = 'pointer';
    s.minWidth = '12rem';
  }

  function renderButton(selector, config) {
    var container = typeof selector === 'string' ? document.querySelector(selector) : selector;
    if (!container) {
      throw new Error('amazon.Pay.renderButton: no element matches ' + selector);
    }
    config = config || {};
    var button = document.createElement('button');
    button.type = 'button';
    button.id = 'amazon-pay-button';
    button.setAttribute('data-testid', 'amazon-pay-button');
    button.setAttribute('aria-label', 'Pay with Amazon Pay (simulated)');
    button.textContent = 'Amazon Pay (simulated)';
    styleButton(button, config.buttonColor);
    var handlers = [];
    button.addEventListener('click', function () {
      for (var i = 0; i < handlers.length; i++) {
        handlers[i]();
      }
      if (config.createCheckoutSessionConfig) {
        startCheckout(config, config.createCheckoutSessionConfig);
      }
    });
    container.appendChild(button);
    return {
      element: button,
      onClick: function (callback) { handlers.push(callback); },
      initCheckout: function (options) {
        startCheckout(config, (options && options.createCheckoutSessionConfig) || options);
      }
    };
  }

  window.amazon = window.amazon || {};
  window.amazon.Pay = window.amazon.Pay || {};
  window.amazon.Pay.renderButton = renderButton;
  window.amazon.Pay.simulated = true;
}());
