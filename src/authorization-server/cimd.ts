import { type LookupAddress, lookup as lookupCallback } from 'node:dns';
import { lookup } from 'node:dns/promises';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { Agent, fetch as undiciFetch } from 'undici';

/** Client ID Metadata Documents (`client_id` is an https URL of the client's metadata). */
export interface ClientIdMetadataDocumentOptions {
  /** Default true. */
  enabled?: boolean;
  /**
   * Allow documents on private, loopback, link-local and other special-use addresses (documentation, benchmarking,
   * shared, reserved; IPv6 forms of such IPv4 addresses). Default false: such targets are refused before any
   * connection is made (and again at connect time, against DNS rebinding). Only for tests and closed networks.
   */
  allowPrivateNetworks?: boolean;
  /** Largest document accepted, in bytes. Default 5 KiB. */
  maxBytes?: number;
  /** Time limit of one fetch, in ms. Default 2500. */
  timeoutMs?: number;
  /** Cache lifetime bounds in seconds (the document's Cache-Control is used within them). Default 30..86400. */
  cacheSeconds?: { min: number; max: number };
}

// Not on the public internet (the IANA special-purpose address registries, RFC 6890 and its updates), matched by
// Node's BlockList. An IPv6 address that carries an IPv4 one (IPv4-mapped, NAT64 64:ff9b::/96, 6to4 2002::/16)
// reaches that IPv4 address: it is refused for the same IPv4 ranges, and NAT64 of a public address stays public.
const PRIVATE = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // shared address space (carrier-grade NAT)
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24], // documentation (TEST-NET-1)
  ['192.88.99.0', 24], // the deprecated 6to4 relay anycast
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation (TEST-NET-2)
  ['203.0.113.0', 24], // documentation (TEST-NET-3)
  ['224.0.0.0', 4],
  ['240.0.0.0', 4], // reserved, and the broadcast address
] as const) {
  PRIVATE.addSubnet(net, bits, 'ipv4');
  const [a, b, c, d] = net.split('.').map(Number) as [number, number, number, number];
  const sixToFour = `2002:${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}::`;
  PRIVATE.addSubnet(`::ffff:${net}`, 96 + bits, 'ipv6');
  PRIVATE.addSubnet(`64:ff9b::${net}`, 96 + bits, 'ipv6');
  PRIVATE.addSubnet(sixToFour, 16 + bits, 'ipv6');
}
for (const [net, bits] of [
  ['::', 96], // unspecified, loopback, and the deprecated IPv4-compatible addresses
  ['64:ff9b:1::', 48], // local-use NAT64 (RFC 8215)
  ['100::', 64], // discard-only
  ['2001::', 23], // IETF protocol assignments: Teredo, benchmarking, ORCHID
  ['2001:db8::', 32], // documentation
  ['3fff::', 20], // documentation (RFC 9637)
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  PRIVATE.addSubnet(net, bits, 'ipv6');
}

/** Whether an IP address is private, loopback, link-local or otherwise not on the public internet. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return PRIVATE.check(address, 'ipv4');
  // A zone index (`fe80::1%eth0`) names an interface, not part of the address.
  if (family === 6) return PRIVATE.check(address.replace(/%.*$/, ''), 'ipv6');
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

/**
 * A `lookup` for the connections of metadata document fetches that fails unless every address of the name is
 * public. The connection goes to the address this lookup returned, so the address checked is the address reached:
 * a name that answers public to the check before the fetch and private at connect time (DNS rebinding) gets no
 * connection at all.
 */
export const publicLookup: LookupFunction = (hostname, options, callback) => {
  lookupCallback(hostname, { ...options, all: true }, (error, found: LookupAddress[]) => {
    if (error) return callback(error, '', 0);
    const addresses = found ?? [];
    const refused = addresses.length === 0 ? hostname : addresses.find((a) => isPrivateAddress(a.address))?.address;
    if (refused !== undefined) {
      const denied = Object.assign(new Error(`${hostname} resolves to a non-public address (${refused})`), {
        code: 'ENOTPUBLIC',
      });
      return callback(denied, '', 0);
    }
    if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
    return callback(null, addresses[0]!.address, addresses[0]!.family);
  });
};

/** How long a failed fetch of a document (unreachable, timed out, too large) is remembered, in ms. */
const FAILURE_MEMORY_MS = 10_000;
const FAILURES_KEPT = 1000;

/**
 * A `fetch` for oidc-provider's outgoing requests with our time and size limits and document normalisation.
 * Connections go through {@link publicLookup} unless private networks are allowed; redirects are not followed
 * (oidc-provider asks for `redirect: 'manual'`, and anything but 200 fails). A failed fetch is remembered for 10 s:
 * oidc-provider looks the client up more than once per authorization request, and a client whose document is
 * unreachable must get its error after one time limit, not several.
 */
export function cimdFetch(options: ClientIdMetadataDocumentOptions) {
  const timeoutMs = options.timeoutMs ?? 2500;
  const maxBytes = options.maxBytes ?? 5 * 1024;
  const dispatcher = new Agent(options.allowPrivateNetworks ? {} : { connect: { lookup: publicLookup } });
  // A failure is a thrown error (unreachable, timed out, too large, refused address) or an answer other than 200.
  const failures = new Map<string, { until: number; error?: unknown; status?: number; headers?: Headers }>();
  const remember = (key: string, failure: { error?: unknown; status?: number; headers?: Headers }) => {
    if (failures.size >= FAILURES_KEPT) failures.delete(failures.keys().next().value!);
    failures.set(key, { until: Date.now() + FAILURE_MEMORY_MS, ...failure });
  };
  return async (url: URL | string, init: RequestInit & { dispatcher?: unknown }): Promise<Response> => {
    const key = String(url);
    const failed = failures.get(key);
    if (failed && failed.until > Date.now()) {
      if (failed.status === undefined) throw failed.error;
      return new Response(null, { status: failed.status, headers: failed.headers });
    }
    failures.delete(key);
    let response: Response;
    try {
      response = await fetchDocument(key, init);
    } catch (error) {
      remember(key, { error });
      throw error;
    }
    if (response.status !== 200) remember(key, { status: response.status, headers: response.headers });
    return response;
  };

  async function fetchDocument(url: string, init: RequestInit): Promise<Response> {
    // An address literal needs no lookup, so the lookup's check does not see it.
    const host = URL.parse(url)?.hostname.replace(/^\[|\]$/g, '') ?? '';
    if (!options.allowPrivateNetworks && isIP(host) && isPrivateAddress(host)) {
      throw new Error(`${host} is not a public address`);
    }
    const response = (await undiciFetch(url, {
      ...(init as object),
      dispatcher,
      signal: AbortSignal.timeout(timeoutMs),
    })) as unknown as Response;
    if (response.status !== 200 || !response.body) {
      await response.body?.cancel();
      return new Response(null, { status: response.status, headers: response.headers });
    }
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
  }
}
