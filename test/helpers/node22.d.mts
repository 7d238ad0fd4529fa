/** The pinned Node 22 version. */
export declare const NODE22_VERSION: string;
/** Absolute path of a Node 22 binary (downloaded on first use; about 30 s, then about 2 s). */
export declare function node22(): string;
