/**
 * Rewrites the `tools/list` answers of an MCP response so that they list only the tools a caller may call. The
 * SDK answers with one JSON body or with an SSE stream (the 2025 transport, or a modern call that streamed);
 * both are rewritten, every other message passes unchanged.
 */

type JsonRpcId = string | number;
type Message = { id?: JsonRpcId; result?: { tools?: Array<{ name?: unknown }> } };

function filterMessage(message: unknown, ids: ReadonlySet<JsonRpcId>, visible: (tool: string) => boolean): unknown {
  const m = message as Message | null;
  if (!m || typeof m !== 'object' || m.id === undefined || !ids.has(m.id)) return message;
  const tools = m.result?.tools;
  if (!Array.isArray(tools)) return message;
  return { ...m, result: { ...m.result, tools: tools.filter((t) => typeof t.name === 'string' && visible(t.name)) } };
}

function filterJson(text: string, ids: ReadonlySet<JsonRpcId>, visible: (tool: string) => boolean): string {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return text;
  }
  const filtered = Array.isArray(body)
    ? body.map((m) => filterMessage(m, ids, visible))
    : filterMessage(body, ids, visible);
  return JSON.stringify(filtered);
}

/** One SSE event (the lines before a blank line): its `data:` lines rewritten when they hold a tools/list answer. */
function filterEvent(event: string, ids: ReadonlySet<JsonRpcId>, visible: (tool: string) => boolean): string {
  const lines = event.split(/\r?\n/);
  const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(l.startsWith('data: ') ? 6 : 5));
  if (data.length === 0) return event;
  const json = data.join('\n');
  const rewritten = filterJson(json, ids, visible);
  if (rewritten === json) return event;
  const others = lines.filter((l) => !l.startsWith('data:'));
  return [...others, `data: ${rewritten}`].join('\n');
}

function filterStream(
  body: ReadableStream<Uint8Array>,
  ids: ReadonlySet<JsonRpcId>,
  visible: (tool: string) => boolean,
): ReadableStream<Uint8Array> {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let buffer = '';
  const boundary = /\r?\n\r?\n/;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        buffer += decoder.decode(chunk, { stream: true });
        for (let match = boundary.exec(buffer); match; match = boundary.exec(buffer)) {
          const event = buffer.slice(0, match.index);
          buffer = buffer.slice(match.index + match[0].length);
          controller.enqueue(encoder.encode(`${filterEvent(event, ids, visible)}\n\n`));
        }
      },
      flush(controller) {
        buffer += decoder.decode();
        if (buffer) controller.enqueue(encoder.encode(filterEvent(buffer, ids, visible)));
      },
    }),
  );
}

/**
 * The response with every answer to one of the `tools/list` requests `ids` narrowed to the tools `visible`
 * accepts. Other responses, and other messages of this one, are passed unchanged.
 */
export async function filterToolLists(
  response: Response,
  ids: ReadonlySet<JsonRpcId>,
  visible: (tool: string) => boolean,
): Promise<Response> {
  if (ids.size === 0 || !response.body) return response;
  const type = (response.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  const headers = new Headers(response.headers);
  headers.delete('content-length');
  const init = { status: response.status, statusText: response.statusText, headers };
  if (type === 'application/json') {
    return new Response(filterJson(await response.text(), ids, visible), init);
  }
  if (type === 'text/event-stream') return new Response(filterStream(response.body, ids, visible), init);
  return response;
}
