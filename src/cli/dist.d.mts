// Types for dist.mjs (plain JavaScript: the bin loads it before any TypeScript loader exists).
export declare const ROOT: string;
export declare const DIST: string;
export declare const STAMP: string;
export declare const SOURCE_DIRS: string[];
export declare function compiledIsFresh(): boolean;
export declare function buildDist(options?: { quiet?: boolean }): Promise<number>;
export declare const BUNDLE: string;
