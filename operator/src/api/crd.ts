/**
 * Generates the Agent CustomResourceDefinition from the zod schema in `agent.ts`.
 *
 * zod emits JSON Schema draft 2020-12; the API server wants a *structural* OpenAPI v3
 * schema ("Extend the Kubernetes API with CustomResourceDefinitions", sections
 * "Specifying a structural schema", "Defaulting", "Validation rules"). `toStructural`
 * bridges the two: no `$schema`/`$ref`, no `propertyNames`, no `additionalProperties`
 * beside `properties`, `const` as a one-value `enum`, opaque nodes marked
 * `x-kubernetes-preserve-unknown-fields`, and the JS-only safe-integer bounds dropped.
 */
import { z } from 'zod';
import { AgentSpec, GROUP, KIND, PLURAL, SINGULAR, VERSION } from './agent.ts';
import { AgentStatus } from './status.ts';

/** A JSON-Schema node, as zod emits it and as the CRD carries it. */
export type SchemaNode = { [key: string]: unknown };

const DROP_KEYS = new Set(['$schema', 'propertyNames', '$id', 'id']);
/** Formats the API server knows (k8s.io/kube-openapi/pkg/validation/strfmt); others are dropped. */
const KNOWN_FORMATS = new Set(['int32', 'int64', 'float', 'double', 'byte', 'date', 'date-time', 'uri', 'email', 'hostname', 'ipv4', 'ipv6', 'cidr', 'uuid']);

/**
 * Converts one zod JSON-Schema node (recursively) into a structural schema node.
 * Throws when it meets a construct the API server cannot take (`$ref`, a node
 * without `type` that is not marked opaque), so a schema change that would produce
 * a CRD the server rejects fails at generation time, naming the path.
 */
export function toStructural(node: SchemaNode, path = '$'): SchemaNode {
  if ('$ref' in node) throw new Error(`${path}: $ref is not allowed in a structural schema; inline the type`);
  const out: SchemaNode = {};
  for (const [key, value] of Object.entries(node)) {
    if (DROP_KEYS.has(key)) continue;
    switch (key) {
      case 'properties': {
        const props: SchemaNode = {};
        for (const [name, child] of Object.entries(value as Record<string, SchemaNode>)) {
          props[name] = toStructural(child, `${path}.${name}`);
        }
        out.properties = props;
        break;
      }
      case 'items':
        out.items = toStructural(value as SchemaNode, `${path}[]`);
        break;
      case 'additionalProperties':
        // `false` is zod's strict object; the server prunes unknown fields instead.
        if (typeof value === 'object' && value !== null && !('properties' in node)) {
          out.additionalProperties = toStructural(value as SchemaNode, `${path}{}`);
        }
        break;
      case 'anyOf':
      case 'oneOf':
      case 'allOf':
      case 'not':
        // zod emits these for unions and nullables; inside them the API server allows
        // value validations only, which zod does not guarantee. Keep schemas union-free.
        throw new Error(`${path}: ${key} (a zod union or nullable) cannot be made structural; use one type per field`);
      case 'type':
        if (typeof value !== 'string') throw new Error(`${path}: every node of a structural schema needs a single type (got ${JSON.stringify(value)})`);
        out.type = value;
        break;
      case 'const':
        out.enum = [value];
        break;
      case 'format':
        if (KNOWN_FORMATS.has(value as string)) out.format = value;
        break;
      case 'maximum':
      case 'minimum':
        if (Math.abs(value as number) < Number.MAX_SAFE_INTEGER) out[key] = value;
        break;
      default:
        out[key] = value;
    }
  }
  if (out['x-kubernetes-preserve-unknown-fields'] === true) {
    // An opaque node: keep only what is allowed beside it.
    const keep: SchemaNode = { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
    if (out.description) keep.description = out.description;
    return keep;
  }
  if (out.type === undefined) {
    if (Object.keys(node).length === 0 || (Object.keys(out).length === 1 && 'description' in out)) {
      return { ...out, 'x-kubernetes-preserve-unknown-fields': true };
    }
    throw new Error(`${path}: every node of a structural schema needs a type (got ${JSON.stringify(node)})`);
  }
  return out;
}

/** The zod schema of a field rendered as a structural schema node (input side: defaults shown). */
export function structuralSchemaOf(schema: z.ZodType): SchemaNode {
  return toStructural(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'throw' }));
}

/**
 * The full `apiextensions.k8s.io/v1` CustomResourceDefinition of `Agent`.
 * Pure: the same schema always yields the same object (key order included), which is
 * what lets a test fail when `crds/` is stale.
 */
export function agentCrd(): SchemaNode {
  const spec = structuralSchemaOf(AgentSpec);
  const status = structuralSchemaOf(AgentStatus);
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${PLURAL}.${GROUP}`,
      labels: { 'app.kubernetes.io/name': 'agent-smith', 'app.kubernetes.io/part-of': 'agent-smith' },
    },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: { kind: KIND, listKind: `${KIND}List`, plural: PLURAL, singular: SINGULAR, categories: ['agentsmith'] },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
            { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
            { name: 'Restarts', type: 'integer', jsonPath: '.status.restarts' },
            { name: 'Harness', type: 'string', jsonPath: '.spec.harness.kind' },
            { name: 'Team', type: 'string', jsonPath: '.spec.team', priority: 1 },
            { name: 'Pod', type: 'string', jsonPath: '.status.podName', priority: 1 },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description:
                'An Agent is a long-lived AI coding agent: a coding-agent CLI kept alive in tmux in its own pod, reachable from Matrix, rewoken by pull-request reviews, and with egress only through a credential-swap proxy.',
              required: ['spec'],
              'x-kubernetes-validations': [
                {
                  rule: "size(self.metadata.name) <= 52 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
                  message:
                    'metadata.name must be a DNS label of at most 52 characters (lower-case letters, digits, "-"): it names the StatefulSet, its pod and its Service',
                },
              ],
              properties: {
                apiVersion: { type: 'string', description: 'APIVersion of this object: agentsmith.dev/v1alpha1.' },
                kind: { type: 'string', description: 'Kind of this object: Agent.' },
                metadata: { type: 'object' },
                spec: spec,
                status: status,
              },
            },
          },
        },
      ],
    },
  };
}
