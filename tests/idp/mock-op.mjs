// An OpenID provider that answers wrongly on purpose (oauth2-mock-server, with hooks), for the
// forged-response tests. Env: PORT, EMAIL. Switch with POST /__mode/<mode>.
// Its authorize endpoint redirects at once with a code; it keeps the nonce and checks PKCE.
import http from 'node:http';
import crypto from 'node:crypto';
import { OAuth2Server } from 'oauth2-mock-server';
import { decodeJwt, decodeProtectedHeader } from 'jose';

const port = Number(process.env.PORT || 4100);
const email = process.env.EMAIL || 'alice@example.test';
const srv = new OAuth2Server();
await srv.issuer.keys.generate('RS256');
srv.issuer.url = `http://127.0.0.1:${port}`;
let mode = 'ok';
const foreign = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const b64u = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const publicPem = () => {
  const jwk = srv.issuer.keys.toJSON(false)[0];
  return crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
};

srv.service.on('beforeTokenSigning', (token) => {
  if (!('aud' in token.payload)) return; // the access token; the ID token has aud
  const now = Math.floor(Date.now() / 1000);
  Object.assign(token.payload, { email, email_verified: true, name: 'Alice Mock' });
  if (mode === 'bad_nonce') token.payload.nonce = 'not-the-nonce';
  if (mode === 'no_nonce') delete token.payload.nonce;
  if (mode === 'wrong_aud') token.payload.aud = 'someone-else';
  if (mode === 'extra_aud') token.payload.aud = [token.payload.aud, 'someone-else'];
  if (mode === 'wrong_iss') token.payload.iss = 'http://evil.example';
  if (mode === 'expired') Object.assign(token.payload, { iat: now - 7200, nbf: now - 7200, exp: now - 3600 });
  if (mode === 'iat_future') Object.assign(token.payload, { iat: now + 3600, exp: now + 7200 });
  if (mode === 'nbf_future') Object.assign(token.payload, { nbf: now + 3600 });
  if (mode === 'email_unverified') token.payload.email_verified = false;
  if (mode === 'no_email') delete token.payload.email;
  if (mode === 'other_domain') token.payload.email = 'mallory@evil.test';
});

srv.service.on('beforeResponse', (resp) => { // must be synchronous
  const idt = resp.body.id_token;
  if (!idt) return;
  const hdr = decodeProtectedHeader(idt);
  const pl = decodeJwt(idt);
  const sign = (h, key) => {
    const si = `${b64u(h)}.${b64u(pl)}`;
    return `${si}.${crypto.sign('sha256', Buffer.from(si), key).toString('base64url')}`;
  };
  if (mode === 'alg_none') resp.body.id_token = `${b64u({ alg: 'none', typ: 'JWT' })}.${b64u(pl)}.`;
  if (mode === 'foreign_key') resp.body.id_token = sign(hdr, foreign.privateKey);
  if (mode === 'unknown_kid') resp.body.id_token = sign({ ...hdr, kid: 'rotated-away' }, foreign.privateKey);
  if (mode === 'hs256_public_key') {
    const h = { alg: 'HS256', typ: 'JWT', kid: hdr.kid };
    const si = `${b64u(h)}.${b64u(pl)}`;
    resp.body.id_token = `${si}.${crypto.createHmac('sha256', publicPem()).update(si).digest('base64url')}`;
  }
  if (mode === 'tampered_payload') {
    const [h, , s] = idt.split('.');
    resp.body.id_token = `${h}.${b64u({ ...pl, email: 'ceo@example.test' })}.${s}`;
  }
  if (mode === 'no_id_token') delete resp.body.id_token;
});

const handler = srv.service.requestHandler;
http.createServer((req, res) => {
  const m = req.url.match(/^\/__mode\/(\w+)$/);
  if (m) { mode = m[1]; res.end(`mode=${mode}\n`); return; }
  handler(req, res);
}).listen(port, '127.0.0.1', () => console.log(`ready http://127.0.0.1:${port}`));
