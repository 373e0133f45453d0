/**
 * Prints the persona ConfigMap of a persona folder as YAML:
 *   node scripts/persona-configmap.ts agents/example-devbot devbot-persona | kubectl apply -f -
 */
import { stringify } from 'yaml';
import { personaConfigMap } from './lib/persona.ts';

const [folder, name, namespace] = process.argv.slice(2);
if (!folder || !name) {
  console.error('usage: node scripts/persona-configmap.ts <persona-folder> <configmap-name> [namespace]');
  process.exit(2);
}
process.stdout.write(stringify(personaConfigMap(folder, name, namespace)));
