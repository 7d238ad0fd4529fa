import { execFile } from 'node:child_process';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DoctorReport, diagnose, formatDoctorReport } from '../../src/client/doctor.js';
import { listen, type RunningServer } from '../../src/server/node.js';
import { type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';

/** A deliberately misconfigurable MCP server + authorization server on one loopback port. */
interface Misconfig {
  challengeMetadata?: boolean;
  servePrm?: boolean;
  prmResource?: (base: string) => string;
  asIssuer?: (base: string) => string;
  pkceMethods?: string[] | undefined;
}

async function startBroken(config: Misconfig): Promise<RunningServer> {
  let base = '';
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const server = await listen((req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', base).pathname;
    if (path === '/mcp') {
      res.writeHead(401, {
        'www-authenticate':
          config.challengeMetadata === false
            ? 'Bearer'
            : `Bearer resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"`,
      });
      return res.end();
    }
    if (path.startsWith('/.well-known/oauth-protected-resource') && config.servePrm !== false) {
      return json(res, 200, {
        resource: config.prmResource ? config.prmResource(base) : `${base}/mcp`,
        authorization_servers: [`${base}/as`],
      });
    }
    if (path === '/.well-known/oauth-authorization-server/as') {
      return json(res, 200, {
        issuer: config.asIssuer ? config.asIssuer(base) : `${base}/as`,
        authorization_endpoint: `${base}/as/authorize`,
        token_endpoint: `${base}/as/token`,
        registration_endpoint: `${base}/as/register`,
        scopes_supported: ['mcp', 'offline_access'],
        ...('pkceMethods' in config
          ? config.pkceMethods
            ? { code_challenge_methods_supported: config.pkceMethods }
            : {}
          : { code_challenge_methods_supported: ['S256'] }),
      });
    }
    res.writeHead(404);
    res.end('Not Found');
  });
  base = server.url;
  return server;
}

/** Runs the CLI without blocking this process, whose event loop serves the servers under test. */
function cli(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const bin = fileURLToPath(new URL('../../bin/gatehouse.js', import.meta.url));
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { encoding: 'utf8' }, (error, stdout, stderr) => {
      resolve({ status: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

function check(report: DoctorReport, id: string) {
  return report.checks.find((c) => c.id === id);
}

describe('gatehouse doctor', () => {
  let stack: DemoStack;
  beforeAll(async () => {
    stack = await startDemoStack();
  });
  afterAll(() => stack.close());

  it('passes a correctly configured Gatehouse stack', async () => {
    const report = await diagnose(stack.mcpUrl);
    expect(report.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(report.ok).toBe(true);
    expect(check(report, 'pkce')?.status).toBe('pass');
    expect(check(report, 'registration')?.detail).toContain('dynamic registration');
  });

  it('diagnoses a server without metadata', async () => {
    const server = await startBroken({ challengeMetadata: false, servePrm: false });
    try {
      const report = await diagnose(`${server.url}/mcp`);
      expect(report.ok).toBe(false);
      expect(check(report, 'challenge')?.status).toBe('warn');
      const prm = check(report, 'resource-metadata');
      expect(prm?.status).toBe('fail');
      expect(prm?.detail).toContain('/.well-known/oauth-protected-resource/mcp → 404');
      expect(prm?.detail).toContain('/.well-known/oauth-protected-resource → 404');
      expect(prm?.fix).toContain(`${server.url}/.well-known/oauth-protected-resource/mcp`);
    } finally {
      await server.close();
    }
  });

  it('diagnoses an issuer mismatch', async () => {
    const server = await startBroken({ asIssuer: (base) => `${base}/as/` });
    try {
      const report = await diagnose(`${server.url}/mcp`);
      const issuer = check(report, 'issuer-match');
      expect(issuer?.status).toBe('fail');
      expect(issuer?.detail).toContain(`${server.url}/as/`);
      expect(report.ok).toBe(false);
    } finally {
      await server.close();
    }
  });

  it('diagnoses missing PKCE S256', async () => {
    for (const methods of [['plain'], undefined]) {
      const server = await startBroken({ pkceMethods: methods });
      try {
        const report = await diagnose(`${server.url}/mcp`);
        expect(check(report, 'pkce')?.status).toBe('fail');
        expect(check(report, 'pkce')?.fix).toContain('S256');
      } finally {
        await server.close();
      }
    }
  });

  it('diagnoses a resource that is not this server, and warns on a parent (seed 003)', async () => {
    const other = await startBroken({ prmResource: (base) => `${base}/other` });
    const parent = await startBroken({ prmResource: (base) => `${base}/` });
    try {
      const mismatch = check(await diagnose(`${other.url}/mcp`), 'resource-match');
      expect(mismatch?.status).toBe('fail');
      expect(mismatch?.fix).toContain(`${other.url}/mcp`);
      const base = check(await diagnose(`${parent.url}/mcp`), 'resource-match');
      expect(base?.status).toBe('warn');
    } finally {
      await Promise.all([other.close(), parent.close()]);
    }
  });

  it('reports an unreachable server and a bad URL without throwing', async () => {
    const unreachable = await diagnose('http://127.0.0.1:9/mcp', { timeoutMs: 2000 });
    expect(check(unreachable, 'server-reachable')?.status).toBe('fail');
    const bad = await diagnose('ftp://example.com/mcp');
    expect(check(bad, 'server-url')?.status).toBe('fail');
  });

  it('prints a table or JSON from the CLI, with exit code 1 when a problem is found', async () => {
    const server = await startBroken({ pkceMethods: ['plain'] });
    try {
      const table = await cli(['doctor', `${server.url}/mcp`]);
      expect(table.status).toBe(1);
      expect(table.stdout).toMatch(/✗ fail\s+PKCE S256 supported/);
      expect(table.stdout).toContain('fix: Advertise "code_challenge_methods_supported"');
      expect(table.stdout).not.toContain('\u001b['); // no colours when not a TTY
      const json = await cli(['doctor', `${server.url}/mcp`, '--json']);
      const report = JSON.parse(json.stdout) as DoctorReport;
      expect(report.ok).toBe(false);
      expect(report.probes.length).toBeGreaterThan(2);
      const usage = await cli(['doctor']);
      expect(usage.status).toBe(2);
    } finally {
      await server.close();
    }
  });

  it('formats a readable table', async () => {
    const text = formatDoctorReport(await diagnose(stack.mcpUrl));
    expect(text).toContain('✓ pass');
    expect(text).toContain('OK: a spec-following MCP client can log in');
  });
});
