// A real OpenID provider (the certified `oidc-provider` package) on loopback, for Sepal's
// user authentication tests. Not for production: users and their passwords are fixed.
//
//   node server.mjs  (environment: PORT, and TLS_CERT + TLS_KEY for https)
//
// It offers the device authorization flow (RFC 8628), short-lived JWT access tokens and
// rotating refresh tokens, for one confidential client, `sepal`. Its login and consent
// pages are below (oidc-provider leaves them to the deployer). Prints `listening <issuer>`
// once it accepts connections.

import { readFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const tls = process.env.TLS_CERT && process.env.TLS_KEY;
const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
const accessTokenTtl = Number(process.env.ACCESS_TOKEN_TTL || 6);
// The resource server the access tokens are for (their `aud`).
const resource = 'urn:sepal:exec';

// Three users; the password is the name followed by "-pw".
const accounts = {
  alice: { name: 'Alice Admin' },
  bob: { name: 'Bob' },
  carol: { name: 'Carol' },
};

const signingKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

const page = (title, body) => `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${title}</title></head>
<body><h1>${title}</h1>${body}</body></html>`;

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'sepal',
    client_secret: 'sepal-test-secret',
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [{ ...signingKey, kid: 'test-es256', use: 'sig', alg: 'ES256' }] },
  cookies: { keys: ['sepal-test-cookie-key'] },
  scopes: ['openid', 'offline_access'],
  claims: { openid: ['sub'], profile: ['name'] },
  findAccount: async (_ctx, id) => (accounts[id]
    ? { accountId: id, claims: async () => ({ sub: id, name: accounts[id].name }) }
    : undefined),
  rotateRefreshToken: true,
  ttl: {
    AccessToken: accessTokenTtl,
    DeviceCode: 600,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 3600,
    Session: 3600,
  },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: {
      enabled: true,
      userCodeInputSource: async (ctx, form, _out, err) => {
        ctx.body = page('Enter your code', `${err ? '<p>That code is not valid.</p>' : ''}${form}`);
      },
      userCodeConfirmSource: async (ctx, form, client, _deviceInfo, userCode) => {
        ctx.body = page('Confirm the device', `<p>${escape(client.clientId)} asks to sign in with code ${escape(userCode)}.</p>${form}`);
      },
      successSource: async (ctx) => {
        ctx.body = page('Sign-in complete', '<p>You can close this window.</p>');
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'openid offline_access',
        audience: resource,
        accessTokenTTL: accessTokenTtl,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
});

async function form(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 64 * 1024) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

// GET /interaction/<uid>: the login or consent page; POST .../login and .../consent.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const uid = escape(details.uid);
  if (req.method === 'GET') {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    if (details.prompt.name === 'login') {
      res.end(page('Sign in', `<form method="post" action="/interaction/${uid}/login">
<input type="text" name="login" placeholder="user"/>
<input type="password" name="password" placeholder="password"/>
<button type="submit">Sign in</button></form>`));
    } else {
      res.end(page('Allow access', `<form method="post" action="/interaction/${uid}/consent">
<input type="hidden" name="decision" value="allow"/>
<button type="submit">Allow</button></form>`));
    }
    return;
  }
  const fields = await form(req);
  if (req.url.endsWith('/login')) {
    const login = fields.get('login');
    if (!accounts[login] || fields.get('password') !== `${login}-pw`) {
      res.statusCode = 401;
      res.end(page('Sign in failed', '<p>Unknown user or wrong password.</p>'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  if (fields.get('decision') !== 'allow') {
    await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'declined' });
    return;
  }
  const { prompt: { details: missing }, params, session: { accountId }, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const id = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId: id } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
const handler = (req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.statusCode = 400;
      res.end(page('Error', escape(err.message)));
    });
  } else {
    callback(req, res);
  }
};

const server = tls
  ? https.createServer({ cert: readFileSync(process.env.TLS_CERT), key: readFileSync(process.env.TLS_KEY) }, handler)
  : http.createServer(handler);
server.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
