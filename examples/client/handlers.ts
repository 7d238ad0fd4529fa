// Log messages, progress, and the requests a server may send back: sampling, elicitation, roots.
import { Client } from 'gatehouse/client';

await using client = new Client('./build-server.mjs', {
  logHandler: ({ level, logger, data }) => console.log(`[${level}] ${logger ?? 'server'}:`, data),
  progressHandler: ({ progress, total }) => console.log(`${progress}/${total ?? '?'}`),
  samplingHandler: async (params) => ({
    role: 'assistant',
    model: 'my-model',
    content: { type: 'text', text: `(an LLM's answer to ${params.messages.length} messages)` },
  }),
  elicitationHandler: async (params) => {
    console.log(params.message);
    return { action: 'accept', content: { confirmed: true } };
  },
  roots: ['/home/me/project'],
});

await client.setLoggingLevel('info');
await client.callTool(
  'build',
  { target: 'release' },
  { timeout: 120_000, onProgress: ({ progress, message }) => console.log(progress, message) },
);
