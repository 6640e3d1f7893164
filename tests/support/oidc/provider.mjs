// A real OpenID provider for the tests: the certified oidc-provider package, configured from a
// JSON file, with a sign-in page of its own so that tests can choose the strength of a sign-in.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {"port": N, "clients": [...oidc-provider client metadata...],
//          "accounts_file": "accounts.json", "ttl": {"IdToken": s, "AccessToken": s, ...},
//          "device_interval": s (optional: the polling interval the device flow announces)}
// The accounts file is read on every sign-in and token, so a test can change a user's groups:
//   {"alice": {"password": "pw", "groups": ["engineers"], "name": "Alice A."}, ...}
// The sign-in page asks for a login, a password and, optionally, a one-time code: with a code
// (any six digits) the sign-in counts as multi-factor (acr urn:jitgate:mfa, amr pwd+otp),
// without one as a password sign-in (acr urn:jitgate:pwd, amr pwd).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;
const PASSWORD_ACR = 'urn:jitgate:pwd';
const MFA_ACR = 'urn:jitgate:mfa';

function accounts() {
  return JSON.parse(readFileSync(config.accounts_file, 'utf8'));
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: { keys: [signingKey()] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  acrValues: [PASSWORD_ACR, MFA_ACR],
  claims: {
    openid: ['sub', 'acr', 'amr', 'auth_time'],
    profile: ['preferred_username', 'name'],
    email: ['email'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  ttl: {
    AccessToken: 600,
    IdToken: 600,
    RefreshToken: 86400,
    DeviceCode: 600,
    Interaction: 600,
    Session: 86400,
    Grant: 86400,
    ...(config.ttl || {}),
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, sub) {
    const account = accounts()[sub];
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        const current = accounts()[sub] || {};
        return {
          sub,
          preferred_username: current.preferred_username || sub,
          name: current.name || sub,
          email: current.email || `${sub}@example.org`,
          groups: current.groups || [],
        };
      },
    };
  },
});

if (config.device_interval) {
  // oidc-provider announces no interval (clients then wait 5 s, RFC 8628 §3.2); tests ask for less.
  provider.on('device_authorization.success', (_ctx, body) => { body.interval = config.device_interval; });
}

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><title>Test IdP</title></head><body>${body}</body></html>`);
}

function loginForm(uid, params, error) {
  const wants = params.acr_values ? `<p id="wants">asked for: ${escape(params.acr_values)}</p>` : '';
  return `<h1>Test IdP sign-in</h1>${wants}${error ? `<p id="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Login <input name="login" autofocus></label>
<label>Password <input name="password" type="password"></label>
<label>One-time code <input name="otp" inputmode="numeric"></label>
<button type="submit">Sign in</button></form>
<form method="post" action="/interaction/${escape(uid)}/abort"><button type="submit">Cancel</button></form>`;
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function consent(req, res, details) {
  // Consent is given for whatever the client asked: these are the broker's own clients.
  const { prompt, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, {
    mergeWithLastSubmission: true,
  });
}

async function interaction(req, res, url) {
  const [, , uid, action] = url.pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return page(res, 400, '<p>wrong interaction</p>');
  if (req.method === 'GET') {
    if (details.prompt.name === 'consent') return consent(req, res, details);
    return page(res, 200, loginForm(uid, details.params, ''));
  }
  if (action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'the user cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
  }
  const form = await readForm(req);
  const login = form.get('login') || '';
  const account = accounts()[login];
  if (!account || (account.password && account.password !== form.get('password'))) {
    return page(res, 200, loginForm(uid, details.params, 'wrong login or password'));
  }
  const mfa = /^[0-9]{6}$/.test(form.get('otp') || '');
  return provider.interactionFinished(req, res, {
    login: {
      accountId: login,
      acr: mfa ? MFA_ACR : PASSWORD_ACR,
      amr: mfa ? ['pwd', 'otp'] : ['pwd'],
      remember: true,
    },
  }, { mergeWithLastSubmission: false });
}

const callback = provider.callback();
createServer((req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname.startsWith('/interaction/')) {
    interaction(req, res, url).catch((err) => page(res, 500, `<p>${escape(err.message)}</p>`));
    return;
  }
  callback(req, res);
}).listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
