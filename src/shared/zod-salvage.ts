import type { z } from 'zod';

/** What salvage() kept of a value: its valid parts, parsed; or nothing at all. */
export type Salvaged<T> = { ok: true; value: T } | { ok: false };

interface Def {
  type: string;
  innerType?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  keyType?: z.ZodType;
  valueType?: z.ZodType;
  options?: z.ZodType[];
}

/**
 * The valid parts of a value that failed `schema`, parsed as `schema` would parse them, so that a
 * checker which runs after schema validation (templates, patterns, routes) can still look at the
 * parts that are well-formed: a rule with an unknown key still has its templates compiled.
 *
 * Walks objects, records and arrays: a field that fails is left out, required or not (its
 * siblings are still worth checking); unknown keys are left out (the schema's problems report
 * them). A failed array element becomes a hole: the array keeps its length, so the elements that
 * remain keep the index their problems are located by, and forEach/map/flatMap skip the hole.
 * Anything else (a scalar, a union of scalars, a transform) is kept whole or not at all; so is a
 * value that is not even of the right kind (a list where a mapping belongs).
 *
 * The salvaged value is for finding more problems, never for use, and its type says more than it
 * holds: a consumer must tolerate missing required fields and holes in arrays.
 */
export function salvage<S extends z.ZodType>(schema: S, value: unknown): Salvaged<z.output<S>> {
  return walk(schema, value) as Salvaged<z.output<S>>;
}

function walk(schema: z.ZodType, value: unknown): Salvaged<unknown> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return { ok: true, value: parsed.data };
  const def = (schema as unknown as { _zod: { def: Def } })._zod.def;
  switch (def.type) {
    case 'optional':
    case 'nullable':
    case 'default':
      return def.innerType ? walk(def.innerType, value) : { ok: false };
    case 'object': {
      if (!isPlainObject(value) || !def.shape) return { ok: false };
      const out: Record<string, unknown> = {};
      for (const [key, field] of Object.entries(def.shape)) {
        const kept = walk(field, value[key]);
        if (kept.ok && kept.value !== undefined) out[key] = kept.value;
      }
      return { ok: true, value: out };
    }
    case 'record': {
      if (!isPlainObject(value) || !def.valueType) return { ok: false };
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(value)) {
        if (def.keyType && !def.keyType.safeParse(key).success) continue;
        const kept = walk(def.valueType, item);
        if (kept.ok) out[key] = kept.value;
      }
      return { ok: true, value: out };
    }
    case 'array': {
      if (!Array.isArray(value) || !def.element) return { ok: false };
      const out: unknown[] = new Array(value.length);
      value.forEach((item, i) => {
        const kept = walk(def.element as z.ZodType, item);
        if (kept.ok) out[i] = kept.value;
      });
      return { ok: true, value: out };
    }
    case 'union': {
      // A mapping that fails a union of "text or mapping" is salvaged as the mapping it was meant to be.
      if (!isPlainObject(value)) return { ok: false };
      const option = def.options?.find((o) => {
        const t = (o as unknown as { _zod: { def: Def } })._zod.def.type;
        return t === 'object' || t === 'record';
      });
      return option ? walk(option, value) : { ok: false };
    }
    default:
      return { ok: false };
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
