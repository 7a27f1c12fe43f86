// A real OpenID provider (the npm package oidc-provider) for warmbee's end-to-end tests: the programme's
// identity provider as the services meet it in production. Started by tests/e2e/test_identity.py as
//
//   PORT=42020 KEYS_FILE=keys.json AUDIENCE=https://api.warmbee.test node provider.mjs
//
// It listens on 127.0.0.1 only. Its signing keys come from KEYS_FILE (a JWKS of private keys, the first of
// each type signs), so a test rotates them by restarting it with another file, and a second provider of
// another issuer can sign with the very same keys. Every client uses the client credentials grant with a
// resource indicator: the access token is a JWT whose `aud` is the resource, `sub` the client id, and the
// claim ROLE_CLAIM (default `role`) the client's warmbee role. So a test gets a source system's, a rider's
// or an operator's token with one POST /token.
//
// With CONSOLE_REDIRECT_URI set, it also has the operator console as a public client (`warmbee-console`:
// authorization code with PKCE, no secret, its redirect URI that one) and its own login and consent pages
// (oidc-provider's development interactions: any password). People sign in there: the access token's
// `sub` is the login, and its role claim the role of USERS below (a login not listed has none).
import { readFileSync } from 'node:fs';

import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.PORT ?? 42020);
const issuer = process.env.ISSUER ?? `http://127.0.0.1:${port}`;
const audience = process.env.AUDIENCE ?? 'https://api.warmbee.test';
// A resource the provider also serves, that is not warmbee: its tokens must be refused there.
const otherAudience = process.env.OTHER_AUDIENCE ?? 'https://elsewhere.example';
const roleClaim = process.env.ROLE_CLAIM ?? 'role';
const jwks = JSON.parse(readFileSync(process.env.KEYS_FILE, 'utf8'));

// client id (the token's sub) -> the warmbee role its tokens carry and the algorithm that signs them.
const clients = {
  'volunteer-platform': { role: 'source', alg: 'RS256' },
  'grid-office': { role: 'source', alg: 'ES256' },
  'rider-oidc-1001': { role: ['rider'], alg: 'EdDSA' },
  'ops-oidc': { role: 'operator', alg: 'RS256' },
  // A client of the same provider with no warmbee role at all.
  'canteen-app': { role: undefined, alg: 'RS256' },
};

// login -> the warmbee role of a person signing in at the console.
const USERS = { 'ops-alice': 'operator', 'rider-bob': 'rider' };
const consoleRedirect = process.env.CONSOLE_REDIRECT_URI;
const consoleClient = consoleRedirect && {
  client_id: 'warmbee-console',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  redirect_uris: [consoleRedirect],
  token_endpoint_auth_method: 'none',
};

const provider = new Provider(issuer, {
  jwks,
  clients: [
    ...Object.keys(clients).map((id) => ({
      client_id: id,
      client_secret: `${id}-secret`,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    ...(consoleClient ? [consoleClient] : []),
  ],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: Boolean(consoleClient) },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource, client) => {
        if (resource !== audience && resource !== otherAudience) throw new errors.InvalidTarget();
        return {
          audience: resource,
          scope: '',
          accessTokenTTL: Number(process.env.TOKEN_TTL_S ?? 300),
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: clients[client.clientId]?.alg ?? 'RS256' } },
        };
      },
    },
  },
  extraTokenClaims: (_ctx, token) => {
    const role = token.accountId ? USERS[token.accountId] : clients[token.clientId]?.role;
    return role === undefined ? {} : { [roleClaim]: role };
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider ${issuer} listening on 127.0.0.1:${port}, audience ${audience}`);
});
