/** The one field manager every server-side apply of the operator uses. */
export const FIELD_MANAGER = 'agent-smith';

/** Standard labels (Kubernetes "Recommended Labels"). */
export const LABEL_NAME = 'app.kubernetes.io/name';
export const LABEL_INSTANCE = 'app.kubernetes.io/instance';
export const LABEL_COMPONENT = 'app.kubernetes.io/component';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const LABEL_PART_OF = 'app.kubernetes.io/part-of';
export const MANAGED_BY = 'agent-smith';
/** Our own label naming the Agent a child belongs to (also the instance label's value). */
export const LABEL_AGENT = 'agentsmith.dev/agent';
export const LABEL_TEAM = 'agentsmith.dev/team';
/**
 * The shard label: set on an Agent by its owner, copied by the operator onto every child
 * (and the pod), so an operator started with `--agent-selector agentsmith.dev/shard=<s>`
 * can watch only its own shard's children too (operator/src/sharding.ts).
 */
export const LABEL_SHARD = 'agentsmith.dev/shard';

/** Pod-template annotation holding a hash of the rendered config: a change rolls the pod. */
export const ANNOTATION_CONFIG_HASH = 'agentsmith.dev/config-hash';

/** Selector the operator's informers use to see only the children it manages. */
export const MANAGED_SELECTOR = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;

/** Condition types of an Agent. */
export const ConditionType = {
  Ready: 'Ready',
  Progressing: 'Progressing',
  Degraded: 'Degraded',
  StorageInSync: 'StorageInSync',
  SpecValid: 'SpecValid',
  PersonaResolved: 'PersonaResolved',
  CredentialsResolved: 'CredentialsResolved',
  ReferencesResolved: 'ReferencesResolved',
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

/** CamelCase condition reasons. */
export const Reason = {
  PodReady: 'PodReady',
  PodNotReady: 'PodNotReady',
  PodPending: 'PodPending',
  PodMissing: 'PodMissing',
  ContainerRestarting: 'ContainerRestarting',
  /** Event: the agent container's restart count grew. */
  ContainerRestarted: 'ContainerRestarted',
  Suspended: 'Suspended',
  RolloutInProgress: 'RolloutInProgress',
  RolloutComplete: 'RolloutComplete',
  ScaledDown: 'ScaledDown',
  ApplyFailed: 'ApplyFailed',
  InvalidSpec: 'InvalidSpec',
  ValidWithWarnings: 'ValidWithWarnings',
  PersonaNotFound: 'PersonaNotFound',
  CredentialsMissing: 'CredentialsMissing',
  PersonaInvalid: 'PersonaInvalid',
  ReferenceNotFound: 'ReferenceNotFound',
  /** A referenced object exists but its content is unusable (an upstream CA bundle that is not PEM). */
  ReferenceInvalid: 'ReferenceInvalid',
  AsExpected: 'AsExpected',
  VolumeClaimTemplatesImmutable: 'VolumeClaimTemplatesImmutable',
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];
