import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/** Client ID Metadata Documents (`client_id` is an https URL of the client's metadata). */
export interface ClientIdMetadataDocumentOptions {
  /** Default true. */
  enabled?: boolean;
  /**
   * Allow documents on private, loopback and link-local addresses. Default false: such targets are refused before
   * any connection is made (and again at connect time, against DNS rebinding). Only for tests and closed networks.
   */
  allowPrivateNetworks?: boolean;
  /** Largest document accepted, in bytes. Default 5 KiB. */
  maxBytes?: number;
  /** Time limit of one fetch, in ms. Default 2500. */
  timeoutMs?: number;
  /** Cache lifetime bounds in seconds (the document's Cache-Control is used within them). Default 30..86400. */
  cacheSeconds?: { min: number; max: number };
}

const PRIVATE = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  PRIVATE.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['64:ff9b::', 96],
] as const) {
  PRIVATE.addSubnet(net, bits, 'ipv6');
}

/** Whether an IP address is private, loopback, link-local or otherwise not on the public internet. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return PRIVATE.check(address, 'ipv4');
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return PRIVATE.check(mapped[1]!, 'ipv4');
    return PRIVATE.check(address, 'ipv6');
  }
  return true;
}

/** Whether a metadata document URL may be fetched: its host must resolve only to public addresses. */
export async function publicTarget(url: string): Promise<boolean> {
  const parsed = URL.parse(url);
  if (parsed?.protocol !== 'https:') return false;
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host.endsWith('.localhost')) return false;
  if (isIP(host)) return !isPrivateAddress(host);
  try {
    const addresses = await lookup(host, { all: true, verbatim: true });
    return addresses.length > 0 && addresses.every((a) => !isPrivateAddress(a.address));
  } catch {
    return false;
  }
}

// Informational URIs that draft 00 documents may carry as http; draft 02 (oidc-provider) requires https for them.
const INFORMATIONAL = ['client_uri', 'logo_uri', 'policy_uri', 'tos_uri'];

/**
 * Normalises a document so one written for draft 00 (what MCP pins) or draft 02 (what oidc-provider implements)
 * is accepted: informational URIs that are not https are dropped instead of failing the client, and a
 * `token_endpoint_auth_method` left out means `none` (public client), as both drafts intend.
 */
export function normalizeMetadataDocument(document: Record<string, unknown>): Record<string, unknown> {
  const out = { ...document };
  for (const key of INFORMATIONAL) {
    const value = out[key];
    if (value !== undefined && (typeof value !== 'string' || URL.parse(value)?.protocol !== 'https:')) delete out[key];
  }
  if (out['token_endpoint_auth_method'] === undefined) out['token_endpoint_auth_method'] = 'none';
  return out;
}

/** A `fetch` for oidc-provider's outgoing requests with our time and size limits and document normalisation. */
export function cimdFetch(options: ClientIdMetadataDocumentOptions) {
  const timeoutMs = options.timeoutMs ?? 2500;
  const maxBytes = options.maxBytes ?? 5 * 1024;
  return async (url: URL | string, init: RequestInit & { dispatcher?: unknown }): Promise<Response> => {
    const request: RequestInit & { dispatcher?: unknown } = { ...init, signal: AbortSignal.timeout(timeoutMs) };
    if (options.allowPrivateNetworks) delete request.dispatcher;
    const response = await fetch(url, request as RequestInit);
    if (response.status !== 200 || !response.body) return response;
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      size += chunk.length;
      if (size > Math.max(maxBytes, 256 * 1024)) throw new Error('response too large');
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    let body = text;
    try {
      const parsed = JSON.parse(text) as unknown;
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed) && 'client_id' in parsed) {
        if (size > maxBytes) throw new Error('client metadata document too large');
        body = JSON.stringify(normalizeMetadataDocument(parsed as Record<string, unknown>));
      }
    } catch {
      // Not JSON: oidc-provider reports it.
    }
    const headers = new Headers(response.headers);
    headers.delete('content-length');
    headers.delete('content-encoding');
    return new Response(body, { status: response.status, headers });
  };
}
