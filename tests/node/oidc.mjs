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
import http from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

const ttl = Number(process.argv[2] || 3);
const redirect = process.argv[3] || 'http://127.0.0.1:1/oauth/callback';

function signingKeys() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: randomUUID(), alg: 'RS256', use: 'sig' }] };
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
    pkce: { required: () => true },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    jwks: signingKeys(),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:junction',
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          audience: 'urn:junction',
          scope: 'api',
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
  const grant = new current.Grant({ accountId: 'alice', clientId: details.params.client_id });
  grant.addOIDCScope('openid offline_access');
  grant.addResourceScope('urn:junction', 'api');
  const grantId = await grant.save();
  await current.interactionFinished(
    req,
    res,
    { login: { accountId: 'alice' }, consent: { grantId } },
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
  if (req.method === 'POST' && req.url === '/_rotate') {
    current = provider(current.issuer);
    res.writeHead(204).end();
    return;
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
