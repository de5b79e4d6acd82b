// HS256 tokens as the service that logs users in would issue them (README, "Tokens").

import {createHmac} from 'node:crypto';

const base64url = (data) => Buffer.from(data).toString('base64url');

export function makeToken(secret, subject, {expiresInSeconds = 3600} = {}) {
  const header = base64url(JSON.stringify({alg: 'HS256', typ: 'JWT'}));
  const payload = base64url(JSON.stringify({sub: subject, exp: Math.floor(Date.now() / 1000) + expiresInSeconds}));
  const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}
