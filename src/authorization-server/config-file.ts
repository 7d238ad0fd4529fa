import { readFile } from 'node:fs/promises';
import type { z } from 'zod';

/**
 * Reads a JSON config file (`--config FILE`) and validates it with `schema`. A file that cannot be read or parsed,
 * or a value the schema refuses, ends in `fail(message, hint)`: the first problem, by its key path, and the docs
 * page that lists the keys. Shared by `gatehouse serve` and `gatehouse gateway`.
 */
export async function readConfigFile<Schema extends z.ZodType>(
  path: string,
  schema: Schema,
  fail: (message: string, hint: string) => never,
  docsPage: string,
): Promise<z.infer<Schema>> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (cause) {
    return fail(
      `cannot read the config file ${path}: ${(cause as Error).message}`,
      'Give a readable JSON file to --config.',
    );
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return fail(
      `config file ${path}: ${issue.path.join('.') || '(root)'}: ${issue.message}`,
      `See ${docsPage} for the config file keys.`,
    );
  }
  return parsed.data;
}
