import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CRD_FILES, renderCrdYaml } from './crd-yaml.ts';
import { toStructural, type SchemaNode } from './crd.ts';

const root = join(import.meta.dirname, '../../..');

/** Walks a schema and returns the paths of nodes that break the structural rules. */
function structuralViolations(node: SchemaNode, path = '$'): string[] {
  const out: string[] = [];
  if (node.type === undefined && node['x-kubernetes-preserve-unknown-fields'] !== true) out.push(`${path}: no type`);
  for (const bad of ['$ref', '$schema', 'const', 'propertyNames']) if (bad in node) out.push(`${path}: ${bad}`);
  if ('properties' in node && 'additionalProperties' in node) out.push(`${path}: properties beside additionalProperties`);
  for (const [k, v] of Object.entries((node.properties as Record<string, SchemaNode>) ?? {})) out.push(...structuralViolations(v, `${path}.${k}`));
  if (node.items) out.push(...structuralViolations(node.items as SchemaNode, `${path}[]`));
  if (typeof node.additionalProperties === 'object') out.push(...structuralViolations(node.additionalProperties as SchemaNode, `${path}{}`));
  return out;
}

describe('the generated CRD', () => {
  it('is up to date in crds/ (run `npm run gen:crds` after changing the schema)', () => {
    for (const file of CRD_FILES) expect(readFileSync(join(root, file), 'utf8'), `${file} is stale`).toBe(renderCrdYaml());
  });

  it('is a structural schema throughout', async () => {
    const { parse } = await import('yaml');
    const crd = parse(renderCrdYaml()) as { spec: { versions: { schema: { openAPIV3Schema: SchemaNode } }[] } };
    expect(structuralViolations(crd.spec.versions[0]!.schema.openAPIV3Schema)).toEqual([]);
  });

  it('refuses a schema the API server could not take, naming the path', () => {
    expect(() => toStructural({ type: 'object', properties: { a: { $ref: '#/x' } } })).toThrow(/\$\.a: \$ref/);
    expect(() => toStructural(z.toJSONSchema(z.object({ u: z.union([z.string(), z.number()]) })) as SchemaNode)).toThrow(/\$\.u: every node of a structural schema needs a single type/);
    expect(() => toStructural(z.toJSONSchema(z.object({ n: z.string().regex(/a/).or(z.number().int()) })) as SchemaNode)).toThrow(/\$\.n: (anyOf|every node)/);
  });
});
