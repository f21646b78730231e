// A real OpenID Connect provider for the tests: the `oidc-provider` package (node-oidc-
// provider, certified by the OpenID Foundation) with its development login form, the test
// clients and people from a JSON file, and one test-only route that signs ID tokens with the
// provider's own key, the way a CI system (GitHub Actions) hands them to jobs.
//
//   node provider.mjs <config.json>
//
// config.json: {"port": 4000, "clients": [...oidc-provider client metadata...],
//               "accounts": {"<sub>": {"email": ..., "email_verified": true, "name": ..., "groups": [...]}}}
// Prints "listening <issuer>" once it accepts connections.

import { readFileSync } from "node:fs";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import Provider from "oidc-provider";
import { SignJWT } from "jose";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const issuer = `http://127.0.0.1:${config.port}`;

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const kid = randomUUID();
const jwk = { ...privateKey.export({ format: "jwk" }), kid, use: "sig", alg: "RS256" };

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: { keys: [jwk] },
  cookies: { keys: [randomUUID()] },
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name"],
    groups: ["groups"],
  },
  scopes: ["openid", "email", "profile", "groups", "offline_access"],
  // Every claim the scopes allow goes into the ID token too (not only the userinfo answer).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, sub) {
    const account = config.accounts[sub];
    if (!account) return undefined;
    return { accountId: sub, async claims() { return { sub, ...account }; } };
  },
});

// Test only: POST /test/id-token {"claims": {...}, "header": {...}} signs the claims as this
// issuer (iss, iat and exp are filled in unless given), so tests can hand the server tokens
// like those a CI system issues, and tamper with them.
provider.use(async (ctx, next) => {
  if (ctx.path !== "/test/id-token" || ctx.method !== "POST") return next();
  let body = "";
  for await (const chunk of ctx.req) body += chunk;
  const { claims = {}, header = {} } = JSON.parse(body || "{}");
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ iss: issuer, iat: now, exp: now + 300, ...claims })
    .setProtectedHeader({ alg: "RS256", kid, typ: "JWT", ...header })
    .sign(privateKey);
  ctx.type = "text/plain";
  ctx.body = token;
});

// Test only: GET /actions/id-token?audience=... with "Authorization: bearer <token>" answers
// like GitHub Actions' token service ({"value": "<ID token>"}) for a job with the claims in
// config.actions.claims, when the bearer token is config.actions.request_token.
provider.use(async (ctx, next) => {
  if (ctx.path !== "/actions/id-token" || ctx.method !== "GET") return next();
  const actions = config.actions;
  if (!actions || ctx.get("authorization").toLowerCase() !== `bearer ${actions.request_token}`.toLowerCase()) {
    ctx.status = 401;
    ctx.body = { message: "bad request token" };
    return;
  }
  const now = Math.floor(Date.now() / 1000);
  const value = await new SignJWT({ iss: issuer, iat: now, exp: now + 300, aud: ctx.query.audience, ...actions.claims })
    .setProtectedHeader({ alg: "RS256", kid, typ: "JWT" })
    .sign(privateKey);
  ctx.body = { count: 1, value };
});

provider.listen(config.port, "127.0.0.1", () => console.log(`listening ${issuer}`));
