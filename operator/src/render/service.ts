import type { V1Service } from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import { childMeta, childNames, selectorLabels } from './meta.ts';

import { SUPERVISOR_PORT } from '../../../agent-image/src/contract/contract.ts';

/** Port of the supervisor's HTTP server (health, metrics) in the agent container. */
export { SUPERVISOR_PORT };

/** The headless Service that gives the StatefulSet's pod a stable DNS name. Pure. */
export function renderService(agent: Agent): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: childMeta(agent, childNames(agent.metadata.name).service, 'agent'),
    spec: {
      clusterIP: 'None',
      selector: selectorLabels(agent),
      publishNotReadyAddresses: true,
      ports: [{ name: 'http', port: SUPERVISOR_PORT, targetPort: 'http', protocol: 'TCP' }],
    },
  };
}
