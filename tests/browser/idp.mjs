// The demo's IdP (deploy/demo/idp.mjs) as the browser test runs it: the
// same provider and sign-in page, plus a record of every token it issued,
// so the test can prove that none of them reached the page.
//
// Usage: node idp.mjs '<json settings>' <issued-tokens file>
// Prints the issuer URL as its first line, like the demo's IdP.

import { appendFileSync, writeFileSync } from 'node:fs';
import { startIdp } from '../../deploy/demo/idp.mjs';

const settings = JSON.parse(process.argv[2] || '{}');
const issuedFile = process.argv[3];
writeFileSync(issuedFile, '');
const { issuer } = await startIdp(settings, {
  tokenIssued: (body) => {
    for (const key of ['access_token', 'refresh_token', 'id_token']) {
      if (body[key]) appendFileSync(issuedFile, `${body[key]}\n`);
    }
  },
});
console.log(issuer);
