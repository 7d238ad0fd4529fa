import { parseArgs } from 'node:util';
import { type Command, UsageError } from '../command.js';
import { parseLogLevel, runUntilSignal, serviceLogger } from '../service.js';

const command: Command = {
  summary: 'Run a self-hostable MCP authorization server (OAuth 2.1, PKCE, DCR, CIMD, token exchange)',
  usage: `Usage: gatehouse serve [options]

Runs an OAuth 2.1 authorization server with the MCP profile: authorization code + PKCE S256, resource indicators
with JWT or opaque access tokens per resource, rotated refresh tokens, client_credentials, token exchange, dynamic client
registration and client ID metadata documents, login and consent pages, and the device authorization grant (RFC
8628) for devices without a browser (user-code page at /device; settings in the config file's "deviceFlow").

Options:
  --port N                 Port to listen on (default 9000; 0 picks a free one)
  --host HOST              Address to listen on (default 127.0.0.1)
  --issuer URL             Public base URL (default http://HOST:PORT); set it when behind a proxy (an
                           http: issuer that is not loopback is warned about on stderr)
  --store URL              memory | sqlite:[PATH] | redis://HOST:6379 | postgres://USER@HOST/DB
                           (default sqlite: a file in the data directory, $GATEHOUSE_DATA_DIR to change)
  --users FILE             Users file: {"users":[{"username","passwordHash"}]} (see gatehouse admin users hash)
  --superuser NAME         A superuser; its password comes from GATEHOUSE_SUPERUSER_PASSWORD
  --resource URL[=s1,s2]   An MCP server tokens may be issued for, with its scopes (repeatable); options
                           among the scopes: format=jwt|opaque (default jwt), alg=RS256|ES256 (default
                           RS256), ttl=SECONDS (access-token lifetime, default 3600), dpop=required
  --upstream SPEC          Sign in through an upstream (repeatable): github | google | entra:TENANT |
                           oidc:ISSUER | NAME=<one of those>; client ID and secret from
                           GATEHOUSE_UPSTREAM_<NAME>_CLIENT_ID / _CLIENT_SECRET (or the config file)
  --upstream-resource URL=NAME[,scope…]
                           Serve URL with the user's upstream token by token exchange (repeatable),
                           e.g. https://api.github.com=github,repo
  --no-device-flow         Turn the device authorization grant off (on by default)
  --no-local-login         Only upstream sign-in on the login page (default when no users are given)
  --auto-upstream NAME     Skip the login page and send every sign-in to this upstream
  --trust-proxy N|CIDRS    Behind N proxies (or proxies at these addresses, e.g. 10.0.0.0/8,loopback):
                           X-Forwarded-For from them names the client for the login rate limits
  --rotate-keys-every DURATION
                           Rotate the signing keys this often (30d, 12h, 90m): one instance per period
                           writes new keys, every instance publishes them at once and signs with them
                           15 minutes later (keys.activateIn in the config file)
  --name NAME              The service's name on the login and consent pages ("Sign in to NAME")
  --logo URL               A logo on those pages (https, loopback http, or data:image)
  --config FILE            JSON config file (clients, tokenExchange, upstreams, …); flags override it
  --log-level LEVEL        fatal|error|warn|info|debug|silent (default info); logs are JSON on stdout
  --json                   also print the "listening" line as JSON on stdout (issuer, url) instead of text
                           on stderr
  --verbose                --log-level debug (unless --log-level is given)

Examples:
  GATEHOUSE_SUPERUSER_PASSWORD=… gatehouse serve --superuser admin --resource http://127.0.0.1:8000/mcp=mcp:tools
  gatehouse serve --store redis://127.0.0.1:6379 --issuer https://auth.example.com --config gatehouse.json
  GATEHOUSE_UPSTREAM_KEY=… GATEHOUSE_UPSTREAM_GITHUB_CLIENT_ID=… GATEHOUSE_UPSTREAM_GITHUB_CLIENT_SECRET=… \
    gatehouse serve --upstream github --upstream-resource https://api.github.com=github \
    --resource http://127.0.0.1:8000/mcp=mcp:tools --config gatehouse.json   # tokenExchange policy in the file`,
  async run(args) {
    const { values } = parseArgs({
      args,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        issuer: { type: 'string' },
        store: { type: 'string' },
        users: { type: 'string' },
        superuser: { type: 'string' },
        resource: { type: 'string', multiple: true },
        upstream: { type: 'string', multiple: true },
        'upstream-resource': { type: 'string', multiple: true },
        'no-local-login': { type: 'boolean' },
        'no-device-flow': { type: 'boolean' },
        'auto-upstream': { type: 'string' },
        config: { type: 'string' },
        'trust-proxy': { type: 'string' },
        'rotate-keys-every': { type: 'string' },
        'log-level': { type: 'string' },
        name: { type: 'string' },
        logo: { type: 'string' },
        json: { type: 'boolean' },
        verbose: { type: 'boolean' },
      },
      strict: true,
    });
    const port = values.port === undefined ? undefined : Number(values.port);
    if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
      throw new UsageError('--port must be an integer between 0 and 65535');
    }
    if (values.issuer !== undefined && !URL.canParse(values.issuer)) {
      throw new UsageError(`--issuer ${values.issuer} is not a URL (e.g. https://auth.example.com)`);
    }
    const logLevel = parseLogLevel(values['log-level'] ?? (values.verbose ? 'debug' : undefined));

    // Loaded here so that `gatehouse help` loads neither oidc-provider nor a database driver.
    const {
      checkLogo,
      mergeUpstreams,
      parseDuration,
      parseResourceFlag,
      parseTrustProxySetting,
      parseUpstreamResourceFlag,
      plainHttpIssuerWarning,
      readServeConfig,
      ServeConfigError,
      serve,
    } = await import('../../authorization-server/serve.js');
    // A flag value its parser refuses is bad usage (exit 2), with the parser's precise fix line.
    const flagValue = <T>(parse: () => T): T => {
      try {
        return parse();
      } catch (error) {
        if (error instanceof ServeConfigError) throw new UsageError(error.message, error.hint);
        throw error;
      }
    };
    const resources = values.resource?.map((value) => flagValue(() => parseResourceFlag(value)));
    const upstreamResources = values['upstream-resource']?.map((value) =>
      flagValue(() => parseUpstreamResourceFlag(value)),
    );
    if (values.logo !== undefined) flagValue(() => checkLogo(values.logo!));
    if (values['trust-proxy'] !== undefined) flagValue(() => parseTrustProxySetting(values['trust-proxy']!));
    if (values['rotate-keys-every'] !== undefined) {
      flagValue(() => parseDuration(values['rotate-keys-every']!, '--rotate-keys-every'));
    }
    const file = values.config ? await readServeConfig(values.config) : {};
    const config = {
      ...file,
      ...(port !== undefined ? { port } : {}),
      ...(values.host ? { host: values.host } : {}),
      ...(values.issuer ? { issuer: values.issuer } : {}),
      ...(values.store ? { store: values.store } : {}),
      ...(values.users ? { users: values.users } : {}),
      ...(values.superuser ? { superuser: values.superuser } : {}),
      ...(values.name ? { name: values.name } : {}),
      ...(values.logo ? { logo: values.logo } : {}),
      ...(logLevel ? { logLevel } : {}),
      ...(resources?.length ? { resources } : {}),
      ...(values.upstream?.length ? { upstreams: mergeUpstreams(file.upstreams, values.upstream) } : {}),
      ...(upstreamResources?.length
        ? { upstreamResources: [...(file.upstreamResources ?? []), ...upstreamResources] }
        : {}),
      ...(values['no-local-login'] ? { localLogin: false } : {}),
      ...(values['no-device-flow'] ? { deviceFlow: false as const } : {}),
      ...(values['trust-proxy'] !== undefined ? { trustProxy: values['trust-proxy'] } : {}),
      ...(values['auto-upstream'] ? { autoUpstream: values['auto-upstream'] } : {}),
      ...(values['rotate-keys-every'] !== undefined
        ? { keys: { ...file.keys, rotateEvery: values['rotate-keys-every'] } }
        : {}),
    };
    const logger = await serviceLogger('gatehouse-authorization-server', config.logLevel);
    logger.debug(
      { resources: config.resources, upstreams: config.upstreams?.length ?? 0, localLogin: config.localLogin },
      'configuration',
    );
    const running = await serve(config, { logger });
    const warning = plainHttpIssuerWarning(running.issuer);
    if (warning) console.error(`gatehouse serve: warning: ${warning}`);
    if (values.json) console.log(JSON.stringify({ msg: 'listening', issuer: running.issuer, url: running.url }));
    else console.error(`gatehouse serve: issuer ${running.issuer}, listening on ${running.url}`);
    return runUntilSignal(running.close, logger);
  },
};
export default command;
