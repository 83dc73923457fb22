// Rocket.Chat's own types for what importops answers, as a typed client sees them.
//
// - `ImportProgress` is the source of the JSON Schema that ts-json-schema-generator makes for
//   the run-time checks (core-typings ships no schema for it).
// - `Answer<M, P>` is what @rocket.chat/api-client's RestClient resolves to for a route:
//   `Serialized<OperationResult<M, P>>` from rest-typings and core-typings (dates as strings).
//   checks.mjs writes the answers it received into generated/answers.ts, each declared with its
//   `Answer<…>` type, and `tsc --noEmit` then checks that every answer is assignable to it.
import type { IImportProgress, Serialized } from '@rocket.chat/core-typings';
import type { Method, OperationResult, PathPattern } from '@rocket.chat/rest-typings';

export type ImportProgress = IImportProgress;

export type Answer<M extends Method, P extends PathPattern> = Serialized<OperationResult<M, P>>;

/** The type of a JSON literal written `as const`, without its `readonly`s. */
export type Mutable<T> = T extends readonly (infer U)[]
  ? Mutable<U>[]
  : T extends object
    ? { -readonly [K in keyof T]: Mutable<T[K]> }
    : T;
