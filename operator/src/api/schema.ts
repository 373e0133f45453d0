/**
 * Helpers that attach Kubernetes structural-schema extensions to zod nodes; the CRD
 * generator (crd.ts) copies them into the OpenAPI schema verbatim.
 */
import { z } from 'zod';

/** One CEL rule as `x-kubernetes-validations` takes it (Kubernetes "Validation rules"). */
export interface CelRule {
  rule: string;
  message: string;
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueRequired' | 'FieldValueForbidden' | 'FieldValueDuplicate';
}

/** Attaches CEL rules to a schema node; the CRD generator copies them verbatim. */
export function cel<T extends z.ZodType>(schema: T, ...rules: CelRule[]): T {
  return schema.meta({ 'x-kubernetes-validations': rules });
}

/** Marks an array as a map list keyed by `keys`, so server-side apply merges by key. */
export function mapList<T extends z.ZodType>(schema: T, ...keys: string[]): T {
  return schema.meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': keys });
}

/** Lets an opaque Kubernetes type (affinity, tolerations) through unpruned. */
export function opaque(description: string) {
  return z.record(z.string(), z.unknown()).describe(description).meta({ 'x-kubernetes-preserve-unknown-fields': true });
}
