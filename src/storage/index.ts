/**
 * `gatehouse/storage`: key-value storage for client tokens and authorization-server state.
 *
 * @packageDocumentation
 */
export { type MemoryStoreOptions, memoryStore } from './memory.js';
export type { GatehouseStore, KeyValueStore } from './types.js';
