// Drives the official Amazon Pay Node SDK against the offline simulator.
// Input (stdin, JSON): {"config": {...SDK config...}, "caFile": "...", "steps": [...]}.
// Output (stdout, JSON): one result per step, {"status", "data"} or {"status", "error"}.
'use strict';

const fs = require('fs');
const https = require('https');
const Client = require('@amazonpay/amazon-pay-api-sdk-nodejs');

function outcome(promise) {
  return promise.then(
    (response) => ({ status: response.status, data: response.data }),
    (error) => {
      const response = error.response || error; // the SDK rejects with the response for >= 400
      if (response && response.status) {
        return { status: response.status, data: response.data };
      }
      return { status: null, error: String(error && error.message ? error.message : error) };
    },
  );
}

// Sign a request with the SDK's own helper, then send a different body over plain https.
function sendTampered(client, config, caFile, step) {
  const signedPayload = JSON.stringify(step.payload);
  const headers = client.getSignedHeaders({
    method: step.method,
    urlFragment: step.urlFragment,
    payload: signedPayload,
    headers: step.headers || null,
  });
  const body = JSON.stringify(step.sentPayload);
  const [host, port] = config.overrideServiceUrl.split(':');
  const prefix = /^(LIVE|SANDBOX)/i.test(config.publicKeyId) ? '' : (config.sandbox ? 'sandbox/' : 'live/');
  return new Promise((resolve) => {
    const request = https.request({
      host,
      port: Number(port),
      method: step.method,
      path: `/${prefix}v2/${step.urlFragment}`,
      headers: { ...headers, 'content-length': Buffer.byteLength(body) },
      ca: fs.readFileSync(caFile),
    }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => { text += chunk; });
      response.on('end', () => {
        let data = text;
        try { data = JSON.parse(text); } catch (e) { /* keep the text */ }
        resolve({ status: response.statusCode, data });
      });
    });
    request.on('error', (error) => resolve({ status: null, error: error.message }));
    request.end(body);
  });
}

async function main() {
  const input = JSON.parse(fs.readFileSync(0, 'utf8'));
  const config = input.config;
  const client = new Client.WebStoreClient(config);
  const results = [];
  for (const step of input.steps) {
    if (step.op === 'createCheckoutSession') {
      results.push(await outcome(client.createCheckoutSession(step.payload, step.headers)));
    } else if (step.op === 'getCheckoutSession') {
      results.push(await outcome(client.getCheckoutSession(step.id, step.headers)));
    } else if (step.op === 'completeCheckoutSession') {
      results.push(await outcome(client.completeCheckoutSession(step.id, step.payload, step.headers)));
    } else if (step.op === 'generateButtonSignature') {
      results.push({ status: null, data: client.generateButtonSignature(step.payload) });
    } else if (step.op === 'tampered') {
      results.push(await sendTampered(client, config, input.caFile, step));
    } else {
      results.push({ status: null, error: `unknown op ${step.op}` });
    }
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
