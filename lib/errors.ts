/**
 * Errors in what the user gave — a flag, a file, a dataset folder — as opposed to bugs. The tasks print a user
 * error as one line `<task>: <message>` (plus its hint, when it has one) and exit 1, without a stack trace; any
 * other exception is a bug and keeps its stack (`tasks/_cli.ts`).
 */

/** Input that cannot be used; the message names the file or value and the fix. */
export class InputError extends Error {
  /** One line that says what to do, printed under the message. */
  readonly hint?: string;
  /** `message`: what is wrong (naming the file or value); `hint`: what to do about it. */
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "InputError";
    this.hint = options.hint;
  }
}

/** Input of the wrong type or shape (a config field, a file header): a `TypeError` that is the user's, not a bug. */
export class InputTypeError extends TypeError {
  /** `message`: what is wrong, naming the field or file. */
  constructor(message: string) {
    super(message);
    this.name = "InputTypeError";
  }
}

/**
 * Whether `error` is the user's: an `InputError` or `InputTypeError` (and their subclasses), a `RangeError` (this
 * code base's invalid-argument error: every one names the value and the range), a `SyntaxError` (a malformed JSON
 * file the user passed), or a file-system error on a path the user gave (not found, permission, a folder where a
 * file was expected). A plain `TypeError` is the engine's ("x is not a function") and so a bug.
 */
export function isUserError(error: unknown): error is Error {
  return error instanceof InputError || error instanceof InputTypeError || error instanceof RangeError ||
    error instanceof SyntaxError || error instanceof Deno.errors.NotFound ||
    error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.IsADirectory ||
    error instanceof Deno.errors.NotADirectory;
}
