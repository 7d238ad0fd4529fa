/**
 * `gatehouse/testing`: helpers to test MCP servers and clients against real OAuth on loopback.
 *
 * @packageDocumentation
 */
export { DEMO_SCOPE, type DemoStack, type DemoStackOptions, startDemoStack } from './demo-stack.js';
