import { join } from 'node:path';
import ts from 'typescript';

/**
 * Unknown-field detection for Kubernetes manifests. kubernetes-models validates types, formats and
 * required fields but its JSON schemas allow additional properties, so a misspelt or misplaced
 * field (`readOnlyRootFileSystem`, `securityContext` one level too high) passes silently — and the
 * API server would silently drop it, or refuse it under `kubectl apply --validate=strict`.
 *
 * The models' TypeScript declarations list every field of every object, so the type checker knows
 * the same schema: this walks a document alongside its model's interface and reports every key
 * that the interface (or a nested one) does not declare. Index signatures (labels, ConfigMap data)
 * accept any key; `any`/`unknown` (free-form fields) end the walk.
 */
export class FieldChecker {
  private constructor(
    private readonly checker: ts.TypeChecker,
    private readonly types: Map<string, ts.Type>,
  ) {}

  /**
   * Builds a checker for the given models: `specifier` is the module exporting the interface
   * named `typeName` (e.g. 'kubernetes-models/apps/v1/StatefulSet', 'IStatefulSet'). Module
   * resolution starts at `root` (the repository, for node_modules).
   */
  static create(root: string, models: Record<string, { specifier: string; typeName: string }>): FieldChecker {
    const entries = Object.entries(models);
    const virtualFile = join(root, 'test', 'k8s', '__model_types__.ts');
    const source = [
      ...entries.map(([, m], i) => `import type { ${m.typeName} as T${i} } from '${m.specifier}';`),
      `export interface Models {`,
      ...entries.map(([key], i) => `  ${JSON.stringify(key)}: T${i};`),
      `}`,
    ].join('\n');
    const options: ts.CompilerOptions = {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: [],
    };
    const host = ts.createCompilerHost(options);
    const getSourceFile = host.getSourceFile.bind(host);
    const fileExists = host.fileExists.bind(host);
    const readFile = host.readFile.bind(host);
    host.getSourceFile = (name, lang, ...rest) =>
      name === virtualFile ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest);
    host.fileExists = (name) => name === virtualFile || fileExists(name);
    host.readFile = (name) => (name === virtualFile ? source : readFile(name));
    const program = ts.createProgram({ rootNames: [virtualFile], options, host });
    const diagnostics = ts.getPreEmitDiagnostics(program);
    if (diagnostics.length) {
      throw new Error(
        `Cannot load the model types:\n${ts.formatDiagnostics(diagnostics, {
          getCanonicalFileName: (f) => f,
          getCurrentDirectory: () => root,
          getNewLine: () => '\n',
        })}`,
      );
    }
    const checker = program.getTypeChecker();
    const file = program.getSourceFile(virtualFile);
    const moduleSymbol = file && checker.getSymbolAtLocation(file);
    const modelsSymbol =
      moduleSymbol && checker.getExportsOfModule(moduleSymbol).find((s) => s.name === 'Models');
    if (!modelsSymbol) throw new Error('Cannot find the Models interface in the virtual file (a bug).');
    const modelsType = checker.getDeclaredTypeOfSymbol(modelsSymbol);
    const types = new Map<string, ts.Type>();
    for (const [key] of entries) {
      const prop = checker.getPropertyOfType(modelsType, key);
      if (!prop) throw new Error(`Model ${key} is missing from the virtual file (a bug).`);
      types.set(key, checker.getTypeOfSymbol(prop));
    }
    return new FieldChecker(checker, types);
  }

  /** Paths (`spec.template.spec.containers[0].bogus`) of every field the model does not declare. */
  unknownFields(model: string, doc: unknown): string[] {
    const type = this.types.get(model);
    if (!type) throw new Error(`No model type for ${model}.`);
    const found: string[] = [];
    this.walk(doc, type, '', found);
    return found;
  }

  private walk(value: unknown, declared: ts.Type, path: string, found: string[]): void {
    if (value === null || typeof value !== 'object') return;
    const type = this.checker.getNonNullableType(declared);
    if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return;
    if (type.isUnion()) {
      // e.g. IntOrString (number | string) holds no objects; a union of object shapes is accepted
      // when any one of them declares every field.
      const candidates = type.types.filter((t) => this.isContainer(t, Array.isArray(value)));
      if (candidates.length === 0) return;
      let best: string[] | undefined;
      for (const candidate of candidates) {
        const attempt: string[] = [];
        this.walk(value, candidate, path, attempt);
        if (!best || attempt.length < best.length) best = attempt;
      }
      found.push(...(best ?? []));
      return;
    }
    if (Array.isArray(value)) {
      if (!this.checker.isArrayType(type) && !this.checker.isTupleType(type)) return;
      const element = this.checker.getTypeArguments(type as ts.TypeReference)[0];
      if (!element) return;
      value.forEach((item, i) => {
        this.walk(item, element, `${path}[${i}]`, found);
      });
      return;
    }
    if (!(type.flags & ts.TypeFlags.Object)) return;
    const index = this.checker.getIndexInfoOfType(type, ts.IndexKind.String);
    for (const [key, child] of Object.entries(value)) {
      const childPath = path ? `${path}.${key}` : key;
      const prop = this.checker.getPropertyOfType(type, key);
      if (prop) this.walk(child, this.checker.getTypeOfSymbol(prop), childPath, found);
      else if (index) this.walk(child, index.type, childPath, found);
      else found.push(childPath);
    }
  }

  private isContainer(type: ts.Type, array: boolean): boolean {
    if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return true;
    if (!(type.flags & ts.TypeFlags.Object)) return false;
    const isArray = this.checker.isArrayType(type) || this.checker.isTupleType(type);
    return isArray === array;
  }
}
