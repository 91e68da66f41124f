// A real OpenID Connect provider (node-oidc-provider) for the Junction tests.
//
//   node oidc.mjs [TTL_SECONDS] [REDIRECT_URI]
//
// Listens on a free port of 127.0.0.1 and prints one JSON line: {"issuer": "http://127.0.0.1:PORT"}.
// Client `app` (secret `app-secret`) and client `stranger` (secret `stranger-secret`) get JWT
// access tokens with the client credentials grant, audience `urn:junction`, valid for
// TTL_SECONDS (default 3). Client `web` (secret `web-secret`) logs in with the authorization
// code flow (PKCE) back to REDIRECT_URI and gets refresh tokens; the login and consent
// pages answer by themselves, for the account `alice`. POST /_rotate replaces the signing key (a new `kid`), as an
// issuer rotating its keys does; the JWKS at /jwks then holds only the new key.
//
// With OIDC_ANY_CLIENT_SECRET set, any other client id is a client with that secret
// (client_secret_post), every grant and REDIRECT_URI: the packages' own ids work as they are.
// POST /_certificate_client {"client_id", "certificate": PEM} registers a client that
// authenticates with a client assertion signed by the certificate's key (private_key_jwt).
// Only `web` must use PKCE; the prompt `select_account` is accepted like `login`; a login
// without `scope` asks for `api` (and one with `acr_values` for `openid` too), and any scope
// asked for is granted.
// OIDC_IDENTITYSERVER_ROUTES=1 serves the authorization and token endpoints at
// /connect/authorize and /connect/token, as IdentityServer does.
import http from 'node:http';
import { createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider, { interactionPolicy } from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

const ttl = Number(process.argv[2] || 3);
const redirect = process.argv[3] || 'http://127.0.0.1:1/oauth/callback';

function signingKeys() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: randomUUID(), alg: 'RS256', use: 'sig' }] };
}

const anySecret = process.env.OIDC_ANY_CLIENT_SECRET;
const certificateClients = new Map();

function loginClient(id) {
  return {
    client_id: id,
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    redirect_uris: [redirect],
    response_types: ['code'],
  };
}

// Clients beyond the static ones: certificate clients, and (when enabled) any id.
class Adapter extends MemoryAdapter {
  async find(id) {
    if (this.model === 'Client') {
      const jwk = certificateClients.get(id);
      if (jwk) {
        return { ...loginClient(id), token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk] } };
      }
      if (anySecret) {
        return { ...loginClient(id), client_secret: anySecret, token_endpoint_auth_method: 'client_secret_post' };
      }
      return undefined;
    }
    return super.find(id);
  }
}

function prompts() {
  const policy = interactionPolicy.base();
  policy.add(new interactionPolicy.Prompt({ name: 'select_account', requestable: true }));
  return policy;
}

function provider(issuer) {
  const client = (id) => ({
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
  });
  return new Provider(issuer, {
    clients: [
      client('app'),
      client('stranger'),
      {
        ...client('web'),
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
        redirect_uris: [redirect],
        response_types: ['code'],
      },
    ],
    adapter: Adapter,
    ...(process.env.OIDC_IDENTITYSERVER_ROUTES
      ? { routes: { authorization: '/connect/authorize', token: '/connect/token' } }
      : {}),
    interactions: { policy: prompts() },
    pkce: { required: (ctx, client) => client.clientId === 'web' },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    jwks: signingKeys(),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:junction',
        useGrantedResource: () => true,
        // `api`, and whatever else a request asks for: the packages' own scopes.
        getResourceServerInfo: (ctx) => ({
          audience: 'urn:junction',
          scope: ['api', ...String(ctx.oidc?.params?.scope ?? '').split(' ')]
            .filter(Boolean)
            .join(' '),
          accessTokenFormat: 'jwt',
          accessTokenTTL: ttl,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
}

let current;

// Logs `alice` in and grants what was asked, without a page.
async function finishInteraction(req, res) {
  const details = await current.interactionDetails(req, res);
  const grant = details.grantId
    ? await current.Grant.find(details.grantId)
    : new current.Grant({ accountId: 'alice', clientId: details.params.client_id });
  grant.addOIDCScope('openid offline_access');
  grant.addResourceScope('urn:junction', 'api');
  // Whatever else the consent prompt found missing is granted too.
  const missing = details.prompt.details ?? {};
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await current.interactionFinished(
    req,
    res,
    { login: { accountId: 'alice' }, consent: { grantId }, select_account: {} },
    { mergeWithLastSubmission: false },
  );
}
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    finishInteraction(req, res).catch((error) => {
      res.writeHead(500).end(String(error));
    });
    return;
  }
  if (req.method === 'POST' && req.url === '/_certificate_client') {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      try {
        const { client_id: id, certificate } = JSON.parse(body);
        const jwk = createPublicKey(certificate).export({ format: 'jwk' });
        certificateClients.set(id, jwk);
        res.writeHead(204).end();
      } catch (error) {
        res.writeHead(400).end(String(error));
      }
    });
    return;
  }
  if (req.method === 'POST' && req.url === '/_rotate') {
    current = provider(current.issuer);
    res.writeHead(204).end();
    return;
  }
  // A login that asks for no scope (as many packages' do) gets `api`: oidc-provider
  // refuses to grant nothing, most providers do not.
  const url = new URL(req.url, 'http://x');
  if (req.method === 'GET' && /\/(auth|connect\/authorize)$/.test(url.pathname)
      && !url.searchParams.get('scope')) {
    url.searchParams.set('scope', 'api');
    req.url = `${url.pathname}?${url.searchParams}`;
  }
  // oidc-provider takes `acr_values` only with `openid`; other providers do not care.
  const scope = url.searchParams.get('scope') ?? '';
  if (req.method === 'GET' && url.searchParams.has('acr_values') && !scope.split(' ').includes('openid')) {
    url.searchParams.set('scope', `${scope} openid`.trim());
    req.url = `${url.pathname}?${url.searchParams}`;
  }
  current.callback()(req, res);
});
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  current = provider(issuer);
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
process.stdout.on('error', () => {});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
