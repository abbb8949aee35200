/**
 * Command lines of `tasks/`: a task's zod object schema is the one source of its flags (the field names, as
 * `deno task train` spells them: `--batchSize 32`), their types, defaults and validation, and of the `--help` text
 * (from each field's `.describe()`).
 */
import { parseArgs } from "node:util";
import { z } from "zod";

interface Flag {
  field: string;
  flag: string;
  kind: "boolean" | "number" | "string";
  description: string;
  defaultValue?: unknown;
  choices?: readonly string[];
}

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
  return { field, flag: field, kind, description, defaultValue, choices };
}

/** The `--help` text of `schema`: usage line, summary, then one line per flag with its default. */
export function helpText(schema: z.ZodObject, usage: string, summary: string): string {
  const flags = Object.entries(schema.shape).map(([field, s]) => describe(field, s as z.ZodType));
  const width = Math.max(...flags.map((f) => f.flag.length + (f.kind === "boolean" ? 0 : 6)));
  const lines = flags.map((f) => {
    const name = f.kind === "boolean" ? `--${f.flag}` : `--${f.flag} <${f.kind === "number" ? "n" : "s"}>`;
    const extra = [
      f.choices ? `one of ${f.choices.join("|")}` : "",
      f.defaultValue !== undefined ? `default ${JSON.stringify(f.defaultValue)}` : "",
    ].filter(Boolean).join("; ");
    return `  ${name.padEnd(width + 4)} ${f.description}${extra ? ` (${extra})` : ""}`;
  });
  return [
    `usage: ${usage}`,
    "",
    summary,
    "",
    "options:",
    ...lines,
    "  --help".padEnd(width + 7) + "this text",
  ]
    .join("\n");
}

/**
 * Parses `args` against `schema`: prints the help and exits 0 on `--help`; prints every problem as
 * `--flag: message` and exits 2 on an unknown flag or an invalid value; else returns the validated options.
 */
export function parseCommandLine<S extends z.ZodObject>(
  schema: S,
  args: string[],
  help: { usage: string; summary: string },
): z.output<S> {
  const flags = Object.entries(schema.shape).map(([field, s]) => describe(field, s as z.ZodType));
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args,
      options: {
        help: { type: "boolean" },
        ...Object.fromEntries(
          flags.map((f) => [f.flag, { type: f.kind === "boolean" ? "boolean" : "string" }]),
        ),
      },
      strict: true,
    }).values as Record<string, string | boolean | undefined>;
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${helpText(schema, help.usage, help.summary)}`);
    Deno.exit(2);
  }
  if (values.help) {
    console.log(helpText(schema, help.usage, help.summary));
    Deno.exit(0);
  }
  const raw: Record<string, unknown> = {};
  for (const f of flags) {
    const v = values[f.flag];
    if (v !== undefined) raw[f.field] = f.kind === "number" ? Number(v) : v;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      console.error(`--${String(issue.path[0] ?? "")}: ${issue.message}`);
    }
    console.error(`(see --help)`);
    Deno.exit(2);
  }
  return parsed.data;
}

/**
 * Runs a task's body. A `RangeError` or `TypeError` — invalid input, whose message names the fix — prints as one
 * line `<task>: <message>` and exits 1; any other error propagates with its stack.
 */
export async function runTask(task: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    if (!(e instanceof RangeError || e instanceof TypeError)) throw e;
    console.error(`${task}: ${e.message}`);
    Deno.exit(1);
  }
}
