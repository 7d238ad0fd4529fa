import { pathToFileURL } from 'node:url';
import type {
  ClientCapabilities,
  CreateMessageRequest,
  CreateMessageResult,
  ElicitRequest,
  ElicitResult,
  LoggingMessageNotification,
  McpSubscription,
  Progress,
  Root,
  Client as SdkClient,
  ServerNotification,
  SubscriptionFilter,
} from '@modelcontextprotocol/client';

/** A log message the server sent (`notifications/message`), with the server's name on a multi-server client. */
export type LogMessage = LoggingMessageNotification['params'] & { server?: string };

/** Receives progress notifications: `progress` so far, `total` if known, and an optional `message`. */
export type ProgressHandler = (progress: Progress) => void;

/** Where a server-initiated request or notification came from: the server's name on a multi-server client. */
export interface RequestOrigin {
  server?: string;
}

/** Answers a server's `sampling/createMessage` request: run the messages through your LLM. */
export type SamplingHandler = (
  params: CreateMessageRequest['params'],
  origin: RequestOrigin,
) => CreateMessageResult | Promise<CreateMessageResult>;

/**
 * Answers a server's `elicitation/create` request. Form mode (`params.mode` `'form'` or absent): ask the user for
 * the fields of `params.requestedSchema` and return `{ action: 'accept', content }`; fields left out of `content`
 * get the schema's defaults. URL mode (`params.mode === 'url'`): show `params.url` to the user (never fetch it
 * yourself) and return `{ action: 'accept' }` once they agreed to open it; the server later sends
 * `notifications/elicitation/complete`, which reaches {@link MessageHandler.onNotification}.
 */
export type ElicitationHandler = (
  params: ElicitRequest['params'],
  origin: RequestOrigin,
) => ElicitResult | Promise<ElicitResult>;

/** Roots offered to servers: `file://` URIs or paths (turned into `file://` URIs). */
export type RootsInput = Array<string | Root>;

/**
 * Receives what servers announce. Every method is optional; `onNotification` sees every notification, including
 * those the others handle. On a multi-server client, `origin.server` names the server.
 *
 * On a 2026-07-28 connection, list changes and resource updates are only sent to clients that listen for them:
 * the client opens that subscription (`subscriptions/listen`) for the methods you implement.
 */
export interface MessageHandler {
  onToolListChanged?(origin: RequestOrigin): void;
  onResourceListChanged?(origin: RequestOrigin): void;
  onPromptListChanged?(origin: RequestOrigin): void;
  /** A resource subscribed with `client.subscribeResource(uri)` changed: read it again. */
  onResourceUpdated?(uri: string, origin: RequestOrigin): void;
  onProgress?(progress: Progress & { progressToken: string | number }, origin: RequestOrigin): void;
  onLoggingMessage?(message: LogMessage): void;
  onNotification?(notification: ServerNotification, origin: RequestOrigin): void;
}

/** The parts of the Client's options that shape the SDK client: capabilities, handlers, notifications. */
export interface HandlerOptions {
  roots?: RootsInput | (() => RootsInput | Promise<RootsInput>);
  samplingHandler?: SamplingHandler;
  elicitationHandler?: ElicitationHandler;
  logHandler?: (message: LogMessage) => void;
  messageHandler?: MessageHandler;
}

/** The client capabilities that the options declare. */
export function capabilitiesFor(options: HandlerOptions): ClientCapabilities {
  const capabilities: ClientCapabilities = {};
  if (options.roots) capabilities.roots = { listChanged: true };
  if (options.samplingHandler) capabilities.sampling = {};
  // applyDefaults: the SDK fills the fields the user left out with the schema's defaults (SEP-1034).
  if (options.elicitationHandler) capabilities.elicitation = { form: { applyDefaults: true }, url: {} };
  return capabilities;
}

function toRoot(root: string | Root): Root {
  return typeof root !== 'string' ? root : { uri: /^[a-z]+:\/\//i.test(root) ? root : pathToFileURL(root).href };
}

/** @internal Lists the roots as the server receives them. */
export async function listRoots(roots: NonNullable<HandlerOptions['roots']>): Promise<Root[]> {
  return (typeof roots === 'function' ? await roots() : roots).map(toRoot);
}

const LIST_CHANGED = {
  'notifications/tools/list_changed': 'onToolListChanged',
  'notifications/resources/list_changed': 'onResourceListChanged',
  'notifications/prompts/list_changed': 'onPromptListChanged',
} as const;

/**
 * @internal Registers the request and notification handlers of `options` on a new SDK client. `currentRoots`
 * gives the roots at the time of the request (they change with `client.setRoots`); `progressFor` finds the handler
 * of a call's own progress token.
 */
export function installHandlers(
  sdk: SdkClient,
  options: HandlerOptions,
  origin: RequestOrigin,
  hooks: {
    currentRoots: () => HandlerOptions['roots'];
    progressFor: (token: string | number) => ProgressHandler | undefined;
    /** The server says the user completed a URL elicitation. */
    elicitationComplete: (elicitationId: string) => void;
  },
): void {
  const { samplingHandler, elicitationHandler, logHandler, messageHandler } = options;
  const observe = (notification: ServerNotification) => messageHandler?.onNotification?.(notification, origin);

  // Progress is routed here rather than through the SDK's `onprogress`: the SDK drops its progress handler as
  // soon as the response arrives, before notifications read in the same chunk are dispatched, losing them.
  sdk.setNotificationHandler('notifications/progress', (notification) => {
    const { progressToken, ...progress } = notification.params;
    hooks.progressFor(progressToken)?.(progress);
    messageHandler?.onProgress?.({ progressToken, ...progress }, origin);
    observe(notification);
  });
  sdk.setNotificationHandler('notifications/message', (notification) => {
    const message = origin.server === undefined ? notification.params : { ...notification.params, ...origin };
    logHandler?.(message);
    messageHandler?.onLoggingMessage?.(message);
    observe(notification);
  });
  for (const [method, callback] of Object.entries(LIST_CHANGED) as Array<
    [keyof typeof LIST_CHANGED, (typeof LIST_CHANGED)[keyof typeof LIST_CHANGED]]
  >) {
    sdk.setNotificationHandler(method, (notification) => {
      messageHandler?.[callback]?.(origin);
      observe(notification);
    });
  }
  sdk.setNotificationHandler('notifications/elicitation/complete', (notification) => {
    hooks.elicitationComplete(notification.params.elicitationId);
    observe(notification);
  });
  sdk.setNotificationHandler('notifications/resources/updated', (notification) => {
    messageHandler?.onResourceUpdated?.(notification.params.uri, origin);
    observe(notification);
  });
  if (messageHandler?.onNotification) {
    sdk.fallbackNotificationHandler = async (notification) => observe(notification as ServerNotification);
  }
  if (options.roots) {
    sdk.setRequestHandler('roots/list', async () => ({ roots: await listRoots(hooks.currentRoots() ?? []) }));
  }
  if (samplingHandler) {
    sdk.setRequestHandler('sampling/createMessage', async (request) => samplingHandler(request.params, origin));
  }
  if (elicitationHandler) {
    sdk.setRequestHandler('elicitation/create', async (request) => {
      const result = await elicitationHandler(request.params, origin);
      // Defaults are applied to the content the user gave; an accept without content still gets them.
      const form = request.params.mode === undefined || request.params.mode === 'form';
      return form && result.action === 'accept' && !result.content ? { ...result, content: {} } : result;
    });
  }
}

/**
 * @internal The notifications one session listens for on a 2026-07-28 connection, where servers send list
 * changes and resource updates only on a `subscriptions/listen` stream. A change of the filter (a resource
 * subscribed or unsubscribed) replaces the stream.
 */
export class SessionSubscriptions {
  readonly #sdk: SdkClient;
  readonly #handler: MessageHandler | undefined;
  readonly #resources = new Set<string>();
  #stream: McpSubscription | undefined;

  constructor(sdk: SdkClient, handler: MessageHandler | undefined) {
    this.#sdk = sdk;
    this.#handler = handler;
  }

  get #modern(): boolean {
    return this.#sdk.getProtocolEra() === 'modern';
  }

  #filter(): SubscriptionFilter {
    const listChanged = (kind: 'tools' | 'resources' | 'prompts') =>
      Boolean(this.#sdk.getServerCapabilities()?.[kind]?.listChanged);
    const filter: SubscriptionFilter = {};
    if (this.#handler?.onToolListChanged && listChanged('tools')) filter.toolsListChanged = true;
    if (this.#handler?.onResourceListChanged && listChanged('resources')) filter.resourcesListChanged = true;
    if (this.#handler?.onPromptListChanged && listChanged('prompts')) filter.promptsListChanged = true;
    if (this.#resources.size > 0) filter.resourceSubscriptions = [...this.#resources];
    return filter;
  }

  /** Opens (or reopens) the stream for the current filter; does nothing on a 2025 connection. */
  async listen(): Promise<void> {
    if (!this.#modern) return;
    const filter = this.#filter();
    const previous = this.#stream;
    this.#stream = Object.keys(filter).length > 0 ? await this.#sdk.listen(filter) : undefined;
    await previous?.close();
  }

  async subscribe(uri: string, options: { timeout?: number; signal?: AbortSignal }): Promise<void> {
    if (!this.#modern) {
      await this.#sdk.subscribeResource({ uri }, options);
      return;
    }
    this.#resources.add(uri);
    await this.listen();
  }

  async unsubscribe(uri: string, options: { timeout?: number; signal?: AbortSignal }): Promise<void> {
    if (!this.#modern) {
      await this.#sdk.unsubscribeResource({ uri }, options);
      return;
    }
    this.#resources.delete(uri);
    await this.listen();
  }

  async close(): Promise<void> {
    await this.#stream?.close().catch(() => {});
    this.#stream = undefined;
  }
}
