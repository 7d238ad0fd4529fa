import { parseArgs } from 'node:util';
import { type Command, UsageError } from '../command.js';
import { parseLogLevel, runUntilSignal, serviceLogger } from '../service.js';

const command: Command = {
  summary:
    'Put OAuth in front of any MCP server (a stdio command or an HTTP URL), with an embedded authorization server',
  usage: `Usage: gatehouse gateway [options] -- COMMAND [ARGS…]
       gatehouse gateway [options] --upstream URL
       gatehouse gateway [options] --config FILE

Serves MCP servers that have no OAuth behind a protected streamable-HTTP endpoint: a stdio command (one process
per user, or per session), or an HTTP server (streamable HTTP or SSE). An authorization server runs in the same
process (its data in the data directory) unless --issuer names an external one. The caller's token never reaches
the upstream; each MCP request leaves one audit line (JSON on stdout).

Options:
  --upstream URL           An HTTP upstream (streamable HTTP; --sse for the 2024-11-05 SSE transport)
  --sse                    The --upstream speaks the SSE transport
  --config FILE            JSON {"mcpServers": {NAME: {command|url, …}}, …}: several upstreams at /NAME/mcp
  --port N                 Port to listen on (default 8080; 0 picks a free one)
  --host HOST              Address to listen on (default 127.0.0.1)
  --public-url URL         The URL clients reach the gateway at (behind TLS or a load balancer)
  --issuer URL             Use this external authorization server instead of the embedded one
  --same-origin-as         With --issuer: serve its metadata, /authorize, /token and /register at the gateway's
                           origin too (for clients that assume the MCP server's origin is the AS)
  --store URL              Embedded AS store: memory | sqlite:[PATH] | redis://… | postgres://… (default sqlite:);
                           Redis or PostgreSQL also share MCP sessions across instances, with --issuer too
  --superuser NAME         A login for the embedded AS; its password from GATEHOUSE_SUPERUSER_PASSWORD
  --users FILE             Users file for the embedded AS (see gatehouse admin users hash)
  --scope SCOPE            A scope every request needs (repeatable). This flag, --isolation, --idle-timeout,
                           --max-processes, --env, --header and --sse are for the upstream of -- or --upstream;
                           with --config give the upstreams' own keys (the flags are refused there)
  --isolation user|session One stdio process per user (default) or per MCP session
  --idle-timeout SECONDS   Stop a stdio process this long after its last session closed (default 300)
  --max-processes N        At most this many stdio processes (default 20)
  --env NAME=VALUE         Environment of the stdio process (repeatable; \${VAR} expands)
  --header NAME=VALUE      Header sent to the HTTP upstream (repeatable; \${VAR} expands)
  --identity-provider SPEC An identity provider of the embedded AS, as gatehouse serve --upstream: github, google,
                           entra:TENANT, oidc:ISSUER, NAME=… (repeatable; client ID and secret from
                           GATEHOUSE_UPSTREAM_<NAME>_CLIENT_ID / _CLIENT_SECRET, tokens encrypted with
                           GATEHOUSE_UPSTREAM_KEY)
  --upstream-identity NAME[=VAR]
                           Give the upstream the user's own token at that provider: in the environment variable
                           VAR (stdio; default GATEHOUSE_UPSTREAM_TOKEN) or the header VAR (HTTP; default
                           Authorization: Bearer)
  --log-arguments          Put tool-call arguments in the audit trail
  --log-level LEVEL        fatal|error|warn|info|debug|silent (default info)

Without --superuser or --users, the first start creates the user "admin" with a random password, prints it once,
and keeps only its hash (gateway-users.json in the data directory, $GATEHOUSE_DATA_DIR to change).

Examples:
  gatehouse gateway -- npx -y @modelcontextprotocol/server-everything
  gatehouse gateway --upstream http://127.0.0.1:3000/mcp --port 8080
  gatehouse gateway --config gateway.json --public-url https://mcp.example.com`,
  async run(args) {
    const dash = args.indexOf('--');
    const own = dash === -1 ? args : args.slice(0, dash);
    const commandLine = dash === -1 ? [] : args.slice(dash + 1);
    const { values } = parseArgs({
      args: own,
      options: {
        upstream: { type: 'string' },
        sse: { type: 'boolean' },
        config: { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
        'public-url': { type: 'string' },
        issuer: { type: 'string' },
        'same-origin-as': { type: 'boolean' },
        store: { type: 'string' },
        superuser: { type: 'string' },
        users: { type: 'string' },
        scope: { type: 'string', multiple: true },
        isolation: { type: 'string' },
        'idle-timeout': { type: 'string' },
        'max-processes': { type: 'string' },
        env: { type: 'string', multiple: true },
        header: { type: 'string', multiple: true },
        'identity-provider': { type: 'string', multiple: true },
        'upstream-identity': { type: 'string' },
        'log-arguments': { type: 'boolean' },
        'log-level': { type: 'string' },
      },
      strict: true,
    });
    const sources = [commandLine.length > 0, values.upstream !== undefined, values.config !== undefined];
    if (sources.filter(Boolean).length !== 1) {
      throw new UsageError('give exactly one upstream: `-- COMMAND [ARGS…]`, --upstream URL, or --config FILE');
    }
    // A flag the chosen upstream would not use is refused rather than ignored: an ignored --scope would leave the
    // upstreams open to tokens without it.
    const unused: Array<[keyof typeof values, boolean, string]> = [
      ['scope', values.config !== undefined, 'in --config give each upstream its "scopes"'],
      ['isolation', values.config !== undefined, 'in --config give each upstream its "isolation"'],
      ['idle-timeout', values.config !== undefined, 'in --config give each upstream its "idleTimeoutSeconds"'],
      ['max-processes', values.config !== undefined, 'in --config give each upstream its "maxProcesses"'],
      ['env', commandLine.length === 0, 'it is for a stdio upstream (-- COMMAND); in --config give its "env"'],
      ['header', values.upstream === undefined, 'it is for --upstream URL; in --config give its "headers"'],
      ['sse', values.upstream === undefined, 'it is for --upstream URL; in --config give its "type": "sse"'],
    ];
    for (const [flag, refused, instead] of unused) {
      if (refused && values[flag] !== undefined) throw new UsageError(`--${flag} would be ignored here: ${instead}`);
    }
    const port = values.port === undefined ? undefined : Number(values.port);
    if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
      throw new UsageError('--port must be an integer between 0 and 65535');
    }
    for (const flag of ['public-url', 'issuer', 'upstream'] as const) {
      const value = values[flag];
      if (value !== undefined && !URL.canParse(value)) throw new UsageError(`--${flag} ${value} is not a URL`);
    }
    if (values.isolation !== undefined && values.isolation !== 'user' && values.isolation !== 'session') {
      throw new UsageError('--isolation must be user or session');
    }
    const positive = (flag: 'idle-timeout' | 'max-processes') => {
      const value = values[flag];
      if (value === undefined) return undefined;
      const n = Number(value);
      if (!(n > 0) || (flag === 'max-processes' && !Number.isInteger(n))) {
        throw new UsageError(`--${flag} must be a positive number`);
      }
      return n;
    };
    const idleTimeoutSeconds = positive('idle-timeout');
    const maxProcesses = positive('max-processes');
    const pairs = (flag: 'env' | 'header') =>
      values[flag]?.length
        ? Object.fromEntries(
            values[flag].map((pair) => {
              const eq = pair.indexOf('=');
              if (eq <= 0) throw new UsageError(`--${flag} ${pair}: write NAME=VALUE`);
              return [pair.slice(0, eq), pair.slice(eq + 1)];
            }),
          )
        : undefined;
    const logLevel = parseLogLevel(values['log-level']);
    let upstreamIdentity: Upstream['upstreamIdentity'];
    if (values['upstream-identity'] !== undefined) {
      if (values.config) {
        throw new UsageError('--upstream-identity is for one upstream; in --config give each its "upstreamIdentity"');
      }
      const [provider, name] = values['upstream-identity'].split('=', 2) as [string, string | undefined];
      if (!/^[a-z][a-z0-9-]*$/.test(provider) || name === '') {
        throw new UsageError(`--upstream-identity ${values['upstream-identity']}: write PROVIDER[=VAR], e.g. github`);
      }
      upstreamIdentity = { provider, ...(name && (commandLine.length ? { env: name } : { header: name })) };
    }

    const { readGatewayConfig, startGateway } = await import('../../gateway/index.js');
    const { mergeUpstreams, upstreamSpecName } = await import('../../authorization-server/serve.js');
    type Config = import('../../gateway/index.js').GatewayConfig;
    type Upstream = import('../../gateway/index.js').UpstreamConfig;
    const file: Config = values.config ? await readGatewayConfig(values.config) : { mcpServers: {} };
    const shared: Upstream = {
      ...(values.scope?.length && { scopes: values.scope }),
      ...(values.isolation && { isolation: values.isolation as 'user' | 'session' }),
      ...(idleTimeoutSeconds !== undefined && { idleTimeoutSeconds }),
      ...(maxProcesses !== undefined && { maxProcesses }),
      ...(upstreamIdentity && { upstreamIdentity }),
    };
    let mcpServers = file.mcpServers;
    if (commandLine.length) {
      const env = pairs('env');
      mcpServers = {
        mcp: { path: '/mcp', command: commandLine[0]!, args: commandLine.slice(1), ...(env && { env }), ...shared },
      };
    } else if (values.upstream) {
      const headers = pairs('header');
      mcpServers = {
        mcp: {
          path: '/mcp',
          url: values.upstream,
          type: values.sse ? 'sse' : 'http',
          ...(headers && { headers }),
          ...shared,
        },
      };
    }
    const config: Config = {
      ...file,
      mcpServers,
      ...(port !== undefined && { port }),
      ...(values.host && { host: values.host }),
      ...(values['public-url'] && { publicUrl: values['public-url'] }),
      ...(values.issuer && { issuer: values.issuer }),
      ...(values['same-origin-as'] && { sameOriginAuthorizationServer: true }),
      ...(values.store && { store: values.store }),
      ...(values.superuser && { superuser: values.superuser }),
      ...(values.users && { users: values.users }),
      ...(values['log-arguments'] && { logArguments: true }),
      ...(values['identity-provider']?.length && {
        identityProviders: mergeUpstreams(file.identityProviders, values['identity-provider']),
      }),
      ...(logLevel && { logLevel }),
    };
    const logger = await serviceLogger('gatehouse-gateway', config.logLevel);
    const running = await startGateway(config, { logger });
    const lines = [`gatehouse gateway: listening on ${running.url}`];
    for (const upstream of running.upstreams)
      lines.push(`  MCP server ${upstream.name} (${upstream.kind}): ${upstream.url}`);
    lines.push(`  authorization server: ${running.issuer}${running.embedded ? ' (embedded)' : ''}`);
    for (const entry of config.identityProviders ?? []) {
      const name = upstreamSpecName(typeof entry === 'string' ? entry : entry.spec);
      lines.push(`  identity provider ${name}: sign in with it, or link it at ${running.issuer}/upstream/${name}/link`);
    }
    const first = running.upstreams[0]!.url;
    if (running.generatedLogin) {
      const { username, password } = running.generatedLogin;
      lines.push(`  log in as ${username} with the password ${password} (shown only now; only its hash is kept)`);
    } else if (running.usersFile) {
      lines.push(
        `  log in as admin (the password printed at the first start; delete ${running.usersFile} for a new one)`,
      );
    }
    lines.push(
      `  log in: gatehouse login ${first}`,
      `  connect: any MCP client with OAuth, e.g. npx mcp-remote ${first}`,
    );
    console.error(lines.join('\n'));
    return runUntilSignal(running.close, logger);
  },
};
export default command;
