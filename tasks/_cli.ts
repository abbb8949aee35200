/**
 * The command line of every task in `tasks/`: a task's zod object schema is the one source of its flags (field
 * names as flags, `--batchSize 32`; `--batch-size 32` and `--batchSize=32` are the same), their types, defaults and
 * validation, and of the `--help` text (from each field's `.describe()`). Every task also takes `--debug` (or the
 * environment variable `CARROT_DEBUG=1`): user errors then print their stack too.
 *
 * Exit codes: 0 done (or `--help`), 2 bad usage (unknown flag, invalid value, unreadable `--config`), 1 bad input
 * (a file, a dataset folder: `isUserError`), 130 interrupted. A user error prints as `<task>: <message>` plus at most
 * one `hint:` line; anything else is a bug and propagates with its stack.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { InputError, isUserError } from "../lib/errors.ts";

/** Bad usage of a task's command line: exit code 2. */
export class UsageError extends InputError {
  /** `message`: what is wrong, naming the flag; `hint`: what to do (default: see --help). */
  constructor(message: string, hint?: string) {
    super(message, { hint });
    this.name = "UsageError";
  }
}

/**
 * A list option: comma-separated on the command line (`--seeds 0,1,2`), an array or a single value in a `--config`
 * file; every item checked by `item`, so `1,abc` or `1,,2` is refused naming the item.
 */
export function listOf<T extends z.ZodType>(item: T, parse: (text: string) => unknown = (text) => text) {
  return z.union([z.array(z.unknown()), z.string(), z.number()])
    .transform((v) => Array.isArray(v) ? v : typeof v === "number" ? [v] : v.split(",").map(parse))
    .pipe(z.array(item));
}

/** `listOf` for numbers: each comma-separated item read as a number (an empty one as NaN, which `item` refuses). */
export const numberList = (item: z.ZodNumber) =>
  listOf(item, (text) => text.trim() === "" ? NaN : Number(text));

/** How a task is called, for `--help` and for what the schema cannot say. */
export interface CommandLineSpec {
  /** The task's name as in `deno task <task>`, e.g. `train`. */
  task: string;
  /** What the task does, in a sentence or two. */
  summary: string;
  /** The schema field (an array of strings) that collects bare arguments; without it a bare argument is an error. */
  positionals?: string;
  /** Accept `--config file.json`, whose fields are defaults that the command line overrides. */
  configFile?: boolean;
}

interface Flag {
  field: string;
  kind: "boolean" | "number" | "string";
  description: string;
  defaultValue?: unknown;
  choices?: readonly string[];
}

let debug = Deno.env.get("CARROT_DEBUG") === "1";

function describe(field: string, schema: z.ZodType): Flag {
  let inner: z.ZodType = schema, defaultValue: unknown;
  const description = schema.description ?? "";
  for (;;) {
    if (inner instanceof z.ZodDefault) {
      defaultValue = inner.def.defaultValue;
      inner = inner.def.innerType as z.ZodType;
    } else if (inner instanceof z.ZodOptional) {
      inner = inner.def.innerType as z.ZodType;
    } else {
      break;
    }
  }
  const kind = inner instanceof z.ZodBoolean ? "boolean" : inner instanceof z.ZodNumber ? "number" : "string";
  const choices = inner instanceof z.ZodEnum ? (inner.options as string[]) : undefined;
  return { field, kind, description, defaultValue, choices };
}

const flagsOf = (schema: z.ZodObject, spec: CommandLineSpec) =>
  Object.entries(schema.shape).filter(([field]) => field !== spec.positionals).map(([field, s]) =>
    describe(field, s as z.ZodType)
  );

/** The `--help` text of a task: usage line, summary, then one line per flag with its default. */
export function helpText(schema: z.ZodObject, spec: CommandLineSpec): string {
  const flags = flagsOf(schema, spec);
  const name = (f: Flag) =>
    f.kind === "boolean" ? `--${f.field}` : `--${f.field} <${f.kind === "number" ? "n" : "s"}>`;
  const width = Math.max(...flags.map((f) => name(f).length), "--config <file.json>".length);
  const lines = flags.map((f) => {
    const extra = [
      f.choices ? `one of ${f.choices.join("|")}` : "",
      f.defaultValue !== undefined ? `default ${JSON.stringify(f.defaultValue)}` : "",
    ].filter(Boolean).join("; ");
    return `  ${name(f).padEnd(width)}  ${f.description}${extra ? ` (${extra})` : ""}`;
  });
  const positional = spec.positionals ? ` [${spec.positionals} …]` : "";
  return [
    `usage: deno task ${spec.task} [options]${positional}`,
    "",
    spec.summary,
    "",
    "options (--camelCase or --kebab-case, `--name value` or `--name=value`):",
    ...lines,
    ...(spec.configFile
      ? [`  ${"--config <file.json>".padEnd(width)}  defaults from a JSON file; flags win`]
      : []),
    `  ${"--debug".padEnd(width)}  print the stack of errors too (or CARROT_DEBUG=1)`,
    `  ${"--help".padEnd(width)}  this text`,
  ].join("\n");
}

/** Edit distance, for "did you mean" (small strings only). */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length];
}

function unknownFlag(flag: string, flags: readonly Flag[]): UsageError {
  const near = flags.map((f) => ({ f: f.field, d: distance(flag.toLowerCase(), f.field.toLowerCase()) }))
    .sort((a, b) => a.d - b.d)[0];
  const guess = near && near.d <= Math.max(2, flag.length / 3) ? ` (did you mean --${near.f}?)` : "";
  return new UsageError(`--${flag}: unknown option${guess}`);
}

/** `--name value`, `--name=value`, bare booleans and positionals into raw field values (strings, numbers, booleans). */
function tokenize(args: readonly string[], flags: readonly Flag[], spec: CommandLineSpec) {
  const byName = new Map(flags.map((f) => [f.field, f]));
  const raw: Record<string, unknown> = {}, positionals: string[] = [];
  let configPath: string | undefined, help = false;
  for (let i = 0; i < args.length; i++) {
    const match = args[i].match(/^--([^=]+)(?:=(.*))?$/);
    if (!match) {
      if (!spec.positionals) {
        throw new UsageError(`unexpected argument "${args[i]}"; options look like --name value`);
      }
      positionals.push(args[i]);
      continue;
    }
    const name = match[1].replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const next = () => {
      if (match[2] !== undefined) return match[2];
      if (i + 1 < args.length && !args[i + 1].startsWith("--")) return args[++i];
      throw new UsageError(`--${match[1]} needs a value`);
    };
    if (name === "help") help = true;
    else if (name === "debug") debug = true;
    else if (name === "config" && spec.configFile) configPath = next();
    else {
      const flag = byName.get(name);
      if (!flag) throw unknownFlag(match[1], flags);
      if (flag.kind === "boolean") {
        const value = match[2] ?? (/^(true|false)$/.test(args[i + 1] ?? "") ? args[++i] : "true");
        if (!/^(true|false)$/.test(value)) {
          throw new UsageError(`--${match[1]}: expected true or false, got "${value}"`);
        }
        raw[name] = value === "true";
      } else {
        const value = next();
        raw[name] = flag.kind === "number" && value.trim() !== "" ? Number(value) : value;
      }
    }
  }
  if (spec.positionals) raw[spec.positionals] = positionals;
  return { raw, configPath, help };
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`--config ${path}: ${(error as Error).message}`, "pass a JSON file of options");
  }
  try {
    const value = JSON.parse(text);
    if (value && typeof value === "object" && !Array.isArray(value)) return value;
  } catch (error) {
    throw new UsageError(`--config ${path}: not valid JSON (${(error as Error).message})`);
  }
  throw new UsageError(`--config ${path}: expected a JSON object of options`);
}

/**
 * Parses `args` against `schema` (see the module JSDoc): prints the help and exits 0 on `--help`; on an unknown flag,
 * a missing value or an invalid one prints the problem naming the flag (every zod issue, on one line) and a hint, and
 * exits 2; else returns the validated options.
 */
export function parseCommandLine<S extends z.ZodObject>(
  schema: S,
  args: readonly string[],
  spec: CommandLineSpec,
): z.output<S> {
  try {
    const flags = flagsOf(schema, spec);
    const { raw, configPath, help } = tokenize(args, flags, spec);
    if (help) {
      console.log(helpText(schema, spec));
      Deno.exit(0);
    }
    const fromFile = configPath ? readConfigFile(configPath) : {};
    const parsed = schema.strict().safeParse({ ...fromFile, ...raw });
    if (parsed.success) return parsed.data as z.output<S>;
    const problems = parsed.error.issues.map((issue) => {
      const keys = "keys" in issue ? (issue.keys as string[]) : [issue.path.map(String).join(".")];
      const where = keys.map((k) => k.split(".")[0] === spec.positionals ? k.split(".")[0] : `--${k}`).join(
        ", ",
      );
      const inFile = configPath && keys.some((k) => k in fromFile) ? ` (in ${configPath})` : "";
      return `${where}: ${issue.message}${inFile}`;
    });
    throw new UsageError(problems.join("; "));
  } catch (error) {
    if (error instanceof UsageError) fail(spec.task, error);
    throw error;
  }
}

/** A message on one line (a multi-line message would hide its second line among the output). */
const oneLine = (text: string) => text.replace(/\s*\n\s*/g, " ").trim();

/** Prints a user error (see the module JSDoc) and exits 2 for bad usage, 1 for bad input. */
function fail(task: string, error: Error): never {
  if (debug) console.error(error.stack);
  const usage = error instanceof UsageError;
  console.error(`${task}: ${oneLine(error.message)}`);
  const hint = (error as InputError).hint ??
    (usage ? `run \`deno task ${task} --help\` for every option` : undefined);
  if (hint) console.error(`hint: ${oneLine(hint)}`);
  Deno.exit(usage ? 2 : 1);
}

/**
 * Runs a task's body: a user error (`isUserError`; a `UsageError` found after parsing included) prints as
 * `<task>: <message>` plus at most one `hint:` line and exits 2 (usage) or 1 (input), with its stack only under
 * `--debug`; a bug propagates with its stack.
 */
export async function runTask(task: string, body: () => Promise<void> | void): Promise<void> {
  try {
    await body();
  } catch (error) {
    if (isUserError(error)) fail(task, error);
    throw error;
  }
}
