/**
 * The Agent field reference (`docs/reference/agent.md`), rendered from the CRD the
 * operator generates (operator/src/api/crd.ts `agentCrd`, itself generated from the zod
 * schema in operator/src/api/agent.ts). What `kubectl explain agent.spec` prints, on one
 * page: every field's path, type, default, description, bounds, pattern and CEL rules.
 *
 * Pure: the same schema always yields the same text, which is what lets
 * `agent-reference.test.ts` fail when the committed page is stale. Written by
 * `npm run gen:docs` (scripts/gen-docs.ts).
 */
import { agentCrd, type SchemaNode } from '../../operator/src/api/crd.ts';

/** The page, relative to the repository root. */
export const AGENT_REFERENCE_FILE = 'docs/reference/agent.md';

/** The command that rewrites the page (named in the header and in the stale-page test). */
export const GEN_DOCS_COMMAND = 'npm run gen:docs';

interface CelRule {
  rule: string;
  message: string;
  fieldPath?: string;
}

interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  priority?: number;
}

/** One row of the reference: a field and what the schema says of it. */
interface Row {
  path: string;
  type: string;
  required: boolean;
  default?: unknown;
  text: string;
}

/** Escapes text for a Markdown table cell (pipes, line breaks). */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

/** Escapes prose (a schema description) for Markdown: `<name>` is not an HTML tag, `*.domain` not emphasis. */
function prose(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\*/g, '\\*');
}

/** Inline code that survives a table cell: backticks inside get a longer fence. */
function code(text: string): string {
  const fence = text.includes('`') ? '``' : '`';
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${text}${pad}${fence}`;
}

/** The type of a node as Go-like shorthand: `string`, `[]string`, `map[string]string`, `object`. */
function typeOf(node: SchemaNode): string {
  if (node['x-kubernetes-preserve-unknown-fields'] === true && !node.properties) return 'object (free-form)';
  if (node.type === 'array') return `[]${typeOf(node.items as SchemaNode)}`;
  if (node.type === 'object' && typeof node.additionalProperties === 'object') {
    return `map[string]${typeOf(node.additionalProperties as SchemaNode)}`;
  }
  return String(node.type);
}

/** The bounds, enum, pattern and rules of one node, as short phrases. */
function constraints(node: SchemaNode): string[] {
  const out: string[] = [];
  if (Array.isArray(node.enum)) out.push(`one of ${(node.enum as unknown[]).map((v) => code(String(v))).join(', ')}`);
  const range = (min: unknown, max: unknown, unit: string) => {
    if (typeof min === 'number' && typeof max === 'number') out.push(min === max ? `exactly ${min} ${unit}` : `${min} to ${max} ${unit}`);
    else if (typeof min === 'number') out.push(`at least ${min} ${unit}`);
    else if (typeof max === 'number') out.push(`at most ${max} ${unit}`);
  };
  range(node.minLength, node.maxLength, 'characters');
  range(node.minItems, node.maxItems, 'items');
  range(node.minProperties, node.maxProperties, 'entries');
  if (typeof node.minimum === 'number' && typeof node.maximum === 'number') out.push(`${node.minimum} to ${node.maximum}`);
  else if (typeof node.minimum === 'number') out.push(`at least ${node.minimum}`);
  else if (typeof node.maximum === 'number') out.push(`at most ${node.maximum}`);
  if (typeof node.pattern === 'string') out.push(`pattern ${code(node.pattern)}`);
  if (node['x-kubernetes-list-type'] === 'map') {
    const keys = (node['x-kubernetes-list-map-keys'] as string[] | undefined) ?? [];
    out.push(`a list keyed by ${keys.map(code).join(', ')} (server-side apply merges entries by it)`);
  }
  return out;
}

/** Constraints of the elements of an array or map node, prefixed "each item" / "each value". */
function elementConstraints(node: SchemaNode): string[] {
  if (node.type === 'array' && node.items && (node.items as SchemaNode).type !== 'object') {
    const c = constraints(node.items as SchemaNode);
    return c.length ? [`each item: ${c.join(', ')}`] : [];
  }
  if (node.type === 'object' && typeof node.additionalProperties === 'object') {
    const c = constraints(node.additionalProperties as SchemaNode);
    return c.length ? [`each value: ${c.join(', ')}`] : [];
  }
  return [];
}

/** The CEL rules of a node, as "Rule: message (`rule`)". */
function rules(node: SchemaNode): string[] {
  const list = (node['x-kubernetes-validations'] as CelRule[] | undefined) ?? [];
  return list.map((r) => `Rule${r.fieldPath ? ` (on ${code(r.fieldPath)})` : ''}: ${prose(r.message)}.`);
}

/** Every field under `node` (depth first, in schema order), `path` being the node's own path. */
function collect(node: SchemaNode, path: string, out: Row[]): void {
  const required = new Set((node.required as string[] | undefined) ?? []);
  for (const [name, child] of Object.entries((node.properties as Record<string, SchemaNode> | undefined) ?? {})) {
    const childPath = `${path}.${name}`;
    const parts = [
      typeof child.description === 'string' ? prose(child.description) : '',
      ...[...constraints(child), ...elementConstraints(child)].map((c) => `${c[0]!.toUpperCase()}${c.slice(1)}.`),
      ...rules(child),
    ].filter(Boolean);
    out.push({
      path: childPath,
      type: typeOf(child),
      required: required.has(name),
      ...(child.default !== undefined ? { default: child.default } : {}),
      text: parts.join(' '),
    });
    if (child.properties) collect(child, childPath, out);
    const items = child.items as SchemaNode | undefined;
    if (items?.properties) collect(items, `${childPath}[]`, out);
  }
}

function table(rows: Row[]): string {
  const lines = ['| field | type | default | description |', '|---|---|---|---|'];
  for (const r of rows) {
    const def = r.default === undefined ? (r.required ? '**required**' : '') : code(JSON.stringify(r.default));
    lines.push(`| ${code(r.path)} | ${cell(r.type)} | ${cell(def)} | ${cell(r.text)} |`);
  }
  return lines.join('\n');
}

/** The reference page as committed at {@link AGENT_REFERENCE_FILE}. Pure. */
export function renderAgentReference(): string {
  const crd = agentCrd() as {
    spec: {
      group: string;
      names: { kind: string; plural: string; categories?: string[] };
      versions: { name: string; additionalPrinterColumns?: PrinterColumn[]; schema: { openAPIV3Schema: SchemaNode } }[];
    };
  };
  const version = crd.spec.versions[0]!;
  const root = version.schema.openAPIV3Schema;
  const props = root.properties as Record<string, SchemaNode>;
  const spec: Row[] = [];
  const status: Row[] = [];
  collect({ properties: { spec: props.spec! }, required: ['spec'] }, '', spec);
  collect({ properties: { status: props.status! } }, '', status);
  const strip = (rows: Row[]) => rows.map((r) => ({ ...r, path: r.path.slice(1) }));
  const columns = (version.additionalPrinterColumns ?? []).map(
    (c) => `| ${c.name} | ${code(c.jsonPath)} | ${c.priority ? '`-o wide`' : 'always'} |`,
  );
  const objectRules = rules(root);

  return [
    '<!-- Generated by scripts/gen-docs.ts from the CRD schema (operator/src/api/agent.ts). Do not edit by hand:',
    `     change the zod schema's descriptions and run \`${GEN_DOCS_COMMAND}\`. A unit test fails when this page is stale. -->`,
    '',
    '# Agent field reference',
    '',
    `\`${crd.spec.group}/${version.name}\`, kind \`${crd.spec.names.kind}\` (plural \`${crd.spec.names.plural}\`, category \`${(crd.spec.names.categories ?? []).join(', ')}\`).`,
    '',
    typeof root.description === 'string' ? prose(root.description) : '',
    '',
    'This page is generated from the same schema as the CRD in `crds/` (the zod schema in',
    '`operator/src/api/agent.ts`); `kubectl explain agent.spec.<field>` prints the same descriptions.',
    'Defaults are applied by the API server. Bounds, patterns and rules are checked at admission',
    '(`kubectl apply` is refused naming the field); checks the schema cannot express are reported in',
    'the `SpecValid` condition instead ([operations.md](../operations.md#troubleshooting-by-condition-reason)).',
    'Examples: [`agents/example-devbot/agent.yaml`](../../agents/example-devbot/agent.yaml),',
    '[`agents/example-infrabot/agent.yaml`](../../agents/example-infrabot/agent.yaml).',
    '',
    ...(objectRules.length ? ['Whole object:', '', ...objectRules.map((r) => `- ${r}`), ''] : []),
    '## spec',
    '',
    table(strip(spec)),
    '',
    '## status',
    '',
    'Written by the operator only (the status subresource). Condition types and reasons are',
    'listed in [operations.md](../operations.md#troubleshooting-by-condition-reason).',
    '',
    table(strip(status)),
    '',
    '## kubectl get agents',
    '',
    '| column | from | shown |',
    '|---|---|---|',
    ...columns,
    '',
  ].join('\n');
}
