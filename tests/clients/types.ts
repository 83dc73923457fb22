// Rocket.Chat's own types for what importops answers, as a typed client sees them.
//
// - `ImportProgress` is the source of the JSON Schema that ts-json-schema-generator makes for
//   the run-time checks (core-typings ships no schema for it).
// - `Answer<M, P>` is what @rocket.chat/api-client's RestClient resolves to for a route:
//   `OperationResult<M, P>` from rest-typings as JSON carries it (`Json` below: dates as
//   strings, enums as their values).
//   checks.mjs writes the answers it received into generated/answers.ts, each declared with its
//   `Answer<…>` type, and `tsc --noEmit` then checks that every answer is assignable to it.
import type { IImportProgress, Serialized } from '@rocket.chat/core-typings';
import type { Method, OperationResult, PathPattern } from '@rocket.chat/rest-typings';

export type ImportProgress = IImportProgress;

/**
 * A type as its JSON arrives: like core-typings' `Serialized` (dates as strings), except that
 * an `unknown` stays `unknown` (`Serialized` makes it `null`, which no real answer with
 * preferences could satisfy, Rocket.Chat's own included) and a string enum is the union of its
 * values (the JSON holds `"offline"`, not `UserStatus.OFFLINE`).
 */
export type Json<T> = unknown extends T
  ? unknown
  : T extends Date
    ? string
    : T extends string
      ? `${T}`
      : T extends number | boolean | null | undefined
        ? T
        : T extends readonly (infer U)[]
          ? Json<U>[]
          : T extends (...args: never[]) => unknown
            ? never
            : { [K in keyof T]: Json<T[K]> };

export type Answer<M extends Method, P extends PathPattern> = Json<OperationResult<M, P>>;

/** core-typings' own `Serialized`, kept for comparison in messages. */
export type CoreSerialized<T> = Serialized<T>;

/** The type of a JSON literal written `as const`, without its `readonly`s. */
export type Mutable<T> = T extends readonly (infer U)[]
  ? Mutable<U>[]
  : T extends object
    ? { -readonly [K in keyof T]: Mutable<T[K]> }
    : T;
