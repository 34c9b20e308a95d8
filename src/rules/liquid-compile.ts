import {
  AssignTag,
  CaptureTag,
  CaseTag,
  CommentTag,
  Context,
  Drop,
  type Expression,
  type Filter,
  IfTag,
  type Liquid,
  Output,
  type Template,
  TokenKind,
  toValueSync,
  UnlessTag,
  type Value,
} from 'liquidjs';

/**
 * A second renderer for parsed liquidjs templates: it turns the parse tree into plain closures.
 * liquidjs evaluates through generators (so one code path serves sync and async rendering),
 * which costs 3–20 µs per template; rule outputs are rendered for every message, so the
 * common subset is compiled here instead: text, `{{ output | filters }}`, if/elsif/else,
 * unless, case/when, assign, capture, comment, literals, property access and the comparison
 * and boolean operators. The semantics are liquidjs's own, transcribed (property reads with
 * `size`/`first`/`last`, own properties only, truthiness, `==` on arrays, `case` rendering every
 * matching `when`). Anything else — other tags, ranges, `nil`/`empty`/`blank` literals,
 * generator filters — returns null, and the template keeps rendering through liquidjs. A test
 * renders every built-in template both ways over the corpus and requires identical output.
 */
export type CompiledRender = (scope: object) => string;

class Unsupported extends Error {}

interface RenderState {
  env: object;
  globals: object;
  /** Variables set by assign/capture (liquidjs's bottom scope; a null-prototype object, as there). */
  locals: Record<string, unknown>;
  context: Context | undefined;
}

type Evaluator = (st: RenderState) => unknown;
type Renderer = (st: RenderState, out: string[]) => void;

/** Compiles parsed templates, or returns null when they use anything outside the subset. */
export function compileLiquid(templates: Template[], liquid: Liquid): CompiledRender | null {
  let render: Renderer;
  try {
    render = compileTemplates(templates, liquid);
  } catch (err) {
    if (err instanceof Unsupported) return null;
    throw err;
  }
  const globals = (liquid.options.globals ?? {}) as object;
  return (scope) => {
    const st: RenderState = { env: scope, globals, locals: Object.create(null), context: undefined };
    const out: string[] = [];
    render(st, out);
    return out.join('');
  };
}

function compileTemplates(templates: Template[], liquid: Liquid): Renderer {
  const parts = templates.map((t) => compileTemplate(t, liquid));
  if (parts.length === 1) return parts[0] as Renderer;
  return (st, out) => {
    for (let i = 0; i < parts.length; i++) (parts[i] as Renderer)(st, out);
  };
}

function compileTemplate(tpl: Template, liquid: Liquid): Renderer {
  const kind = (tpl as { token?: { kind?: number } }).token?.kind;
  if (kind === TokenKind.HTML && typeof (tpl as { str?: unknown }).str === 'string') {
    const str = (tpl as unknown as { str: string }).str;
    return (_st, out) => {
      out.push(str);
    };
  }
  if (tpl instanceof Output) {
    const value = compileValue(tpl.value, liquid);
    return (st, out) => {
      out.push(stringify(value(st)));
    };
  }
  if (tpl instanceof IfTag) {
    const branches = tpl.branches.map((b) => ({
      test: compileValue(b.value, liquid),
      body: compileTemplates(b.templates, liquid),
    }));
    const otherwise = compileTemplates(tpl.elseTemplates ?? [], liquid);
    return (st, out) => {
      for (const b of branches) {
        if (isTruthy(b.test(st))) return b.body(st, out);
      }
      otherwise(st, out);
    };
  }
  if (tpl instanceof UnlessTag) {
    const branches = tpl.branches.map((b, i) => ({
      test: compileValue(b.value, liquid),
      // The unless branch renders on a falsy value; its elsif branches on truthy ones.
      wantTruthy: i > 0,
      body: compileTemplates(b.templates, liquid),
    }));
    const otherwise = compileTemplates(tpl.elseTemplates, liquid);
    return (st, out) => {
      for (const b of branches) {
        if (isTruthy(b.test(st)) === b.wantTruthy) return b.body(st, out);
      }
      otherwise(st, out);
    };
  }
  if (tpl instanceof CaseTag) {
    const target = compileValue(tpl.value, liquid);
    const branches = tpl.branches.map((b) => ({
      values: b.values.map((v) => compileToken(v, liquid)),
      body: compileTemplates(b.templates, liquid),
    }));
    const otherwise = compileTemplates(tpl.elseTemplates, liquid);
    return (st, out) => {
      const t = target(st);
      let hit = false;
      // Like liquidjs (and Shopify Liquid), every matching `when` renders, not only the first.
      for (const b of branches) {
        for (const v of b.values) {
          if (equals(t, v(st))) {
            b.body(st, out);
            hit = true;
            break;
          }
        }
      }
      if (!hit) otherwise(st, out);
    };
  }
  if (tpl instanceof AssignTag) {
    // `key` and `value` are private in liquidjs's typings, public at runtime.
    const assign = tpl as unknown as { key: string; value: Value };
    const key = assign.key;
    const value = compileValue(assign.value, liquid);
    return (st) => {
      st.locals[key] = value(st);
    };
  }
  if (tpl instanceof CaptureTag) {
    const key = tpl.variable;
    const body = compileTemplates(tpl.templates, liquid);
    return (st) => {
      const inner: string[] = [];
      body(st, inner);
      st.locals[key] = inner.join('');
    };
  }
  if (tpl instanceof CommentTag) return () => {};
  throw new Unsupported();
}

function compileValue(value: Value, liquid: Liquid): Evaluator {
  const initial = compileExpression(value.initial, liquid);
  const filters = value.filters.map((f) => compileFilter(f, liquid));
  if (filters.length === 0) return initial;
  return (st) => {
    let v = initial(st);
    for (let i = 0; i < filters.length; i++)
      v = (filters[i] as (st: RenderState, v: unknown) => unknown)(st, v);
    return v;
  };
}

function compileFilter(filter: Filter, liquid: Liquid): (st: RenderState, v: unknown) => unknown {
  // `handler` and `token` are private in liquidjs's typings, public at runtime.
  const { handler, token } = filter as unknown as {
    handler: (...args: unknown[]) => unknown;
    token: unknown;
  };
  // Generator filters (map, where, sort…) may read variables through the context: keep liquidjs.
  if (handler.constructor?.name === 'GeneratorFunction') throw new Unsupported();
  const args = filter.args.map((arg) => {
    if (Array.isArray(arg)) {
      const [key, token] = arg as [string, unknown];
      const ev = compileToken(token, liquid);
      return (st: RenderState) => [key, ev(st)];
    }
    return compileToken(arg, liquid);
  });
  return (st, v) => {
    st.context ??= new Context(st.env, liquid.options, { sync: true }, { liquid });
    const argv: unknown[] = [v];
    for (const a of args) argv.push(a(st));
    const result = handler.apply({ context: st.context, token, liquid }, argv);
    return isIterator(result) ? toValueSync(result) : result;
  };
}

function compileExpression(expr: Expression, liquid: Liquid): Evaluator {
  const stack: Evaluator[] = [];
  for (const token of expr.postfix as unknown[]) {
    const t = token as { kind?: number; operator?: string };
    if (t.kind === TokenKind.Operator) {
      const op = t.operator as string;
      if (op === 'not') {
        const r = stack.pop() as Evaluator;
        stack.push((st) => !isTruthy(r(st)));
        continue;
      }
      const r = stack.pop() as Evaluator;
      const l = stack.pop() as Evaluator;
      if (!l || !r) throw new Unsupported();
      stack.push(binary(op, l, r));
    } else {
      stack.push(compileToken(token, liquid));
    }
  }
  if (stack.length !== 1) throw new Unsupported();
  return stack[0] as Evaluator;
}

function binary(op: string, l: Evaluator, r: Evaluator): Evaluator {
  switch (op) {
    case '==':
      return (st) => equals(l(st), r(st));
    case '!=':
      return (st) => !equals(l(st), r(st));
    case '>':
      return (st) => (l(st) as number) > (r(st) as number);
    case '<':
      return (st) => (l(st) as number) < (r(st) as number);
    case '>=':
      return (st) => (l(st) as number) >= (r(st) as number);
    case '<=':
      return (st) => (l(st) as number) <= (r(st) as number);
    case 'contains':
      return (st) => {
        const lv = l(st);
        const rv = r(st);
        if (Array.isArray(lv)) return lv.some((x) => equals(x, rv));
        if (typeof (lv as { indexOf?: unknown } | null | undefined)?.indexOf === 'function')
          return (lv as { indexOf(x: unknown): number }).indexOf(rv) > -1;
        return false;
      };
    // liquidjs evaluates both sides (no short-circuit); evaluation has no side effects here.
    case 'and':
      return (st) => {
        const a = isTruthy(l(st));
        const b = isTruthy(r(st));
        return a && b;
      };
    case 'or':
      return (st) => {
        const a = isTruthy(l(st));
        const b = isTruthy(r(st));
        return a || b;
      };
    default:
      throw new Unsupported();
  }
}

function compileToken(token: unknown, liquid: Liquid): Evaluator {
  const t = token as { kind?: number; content?: unknown; variable?: unknown; props?: unknown[] };
  if (t && 'content' in t) {
    const content = t.content;
    // nil, empty and blank are comparison drops in liquidjs: keep liquidjs for them.
    if (content instanceof Drop) throw new Unsupported();
    return () => content;
  }
  if (t?.kind === TokenKind.PropertyAccess) {
    if (t.variable) throw new Unsupported();
    const props = (t.props ?? []).map((p) => compileToken(p, liquid));
    if (props.length === 0) throw new Unsupported();
    return (st) => {
      const first = props[0] as Evaluator;
      const key = first(st) as string;
      let v: unknown = findScope(st, key);
      for (let i = 0; i < props.length; i++) v = readProperty(v, i === 0 ? key : (props[i] as Evaluator)(st));
      return v;
    };
  }
  throw new Unsupported();
}

// ---- liquidjs semantics, transcribed (Context.findScope, Context.readProperty, operators) ----

const hasOwn = Object.prototype.hasOwnProperty;

function findScope(st: RenderState, key: string): unknown {
  if (key in st.locals) return st.locals;
  if (key in st.env) return st.env;
  return st.globals;
}

function readProperty(objIn: unknown, key: unknown): unknown {
  let obj = objIn;
  if (obj && typeof (obj as { toLiquid?: unknown }).toLiquid === 'function')
    obj = (obj as { toLiquid(): unknown }).toLiquid();
  if (obj === null || obj === undefined) return obj;
  if (Array.isArray(obj) && typeof key === 'number') {
    const index = key < 0 ? obj.length + key : key;
    return hasOwn.call(obj, index) ? obj[index] : undefined;
  }
  const value = hasOwn.call(obj, key as PropertyKey)
    ? (obj as Record<PropertyKey, unknown>)[key as PropertyKey]
    : undefined;
  if (typeof value === 'function') return value.call(obj);
  if (key === 'size') return readSize(obj);
  if (key === 'first') return Array.isArray(obj) ? readIndex(obj, 0) : value;
  if (key === 'last') return Array.isArray(obj) ? readIndex(obj, -1) : value;
  return value;
}

function readIndex(arr: unknown[], i: number): unknown {
  const index = i < 0 ? arr.length + i : i;
  return hasOwn.call(arr, index) ? arr[index] : undefined;
}

function readSize(obj: unknown): unknown {
  const o = obj as Record<string, unknown>;
  if (hasOwn.call(o, 'size') || o.size !== undefined) return o.size;
  if (Array.isArray(obj) || typeof obj === 'string') return obj.length;
  if (typeof obj === 'object') return Object.keys(obj as object).length;
  return undefined;
}

function isTruthy(v: unknown): boolean {
  return !(v === false || v === undefined || v === null);
}

function equals(l: unknown, r: unknown): boolean {
  if (Array.isArray(l)) {
    if (!Array.isArray(r) || l.length !== r.length) return false;
    for (let i = 0; i < l.length; i++) if (!equals(l[i], r[i])) return false;
    return true;
  }
  return l === r;
}

function stringify(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === null || v === undefined) return '';
  if (Array.isArray(v)) return v.map(stringify).join('');
  return String(v);
}

function isIterator(v: unknown): v is Iterator<unknown> {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Iterator<unknown>).next === 'function' &&
    typeof (v as Iterator<unknown>).throw === 'function'
  );
}
