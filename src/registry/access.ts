import { createHash } from 'node:crypto';
import pLimit from 'p-limit';
import { DEFAULT_SMALL_REQUESTS } from '../concurrency.js';
import type { ImageSource, RegistryProbe } from '../app/resolve.js';
import type { RegistryAccess } from '../plan.js';
import { type ProbeResult, RegistryClient } from './client.js';
import { type Credentials, CredentialCache } from './credentials.js';
import { type PolicyInput, RegistryPolicy } from './policy.js';
import { Transport } from './transport.js';
import { RegistryStore } from './store.js';

/**
 * How the phases reach registries: one shared transport (connection pools, scheme answers) that
 * carries out the run's RegistryPolicy (policy.ts: how each host is reached, and why), one client
 * per (registry, credentials), a RegistryStore per repository, and the anonymous probe.
 */

export interface ClosableRegistryAccess extends RegistryAccess {
  open(source: ImageSource): RegistryStore;
  close(): Promise<void>;
}

const TAG_LOOKUP_LIMIT = 200;

/** Commands pass policyFromFlags(…); tests may give the policy's input directly. */
export function createRegistryAccess(policy: RegistryPolicy | PolicyInput = {}): ClosableRegistryAccess {
  const resolved = policy instanceof RegistryPolicy ? policy : new RegistryPolicy(policy);
  const transport = new Transport({ policy: resolved });
  const clients = new Map<string, RegistryClient>();
  // Every client of this run shares one read of the credential files and helpers.
  const cache = new CredentialCache();

  const clientFor = (registry: string, credentials: Credentials | undefined, anonymous = false): RegistryClient => {
    // An image's own credentials (the license, for the vendor's hosts) win over the host's.
    const hostCredentials = resolved.host(registry).credentials;
    const creds = credentials ?? hostCredentials.explicit;
    // Keyed by a hash: the map must not hold a readable copy of anyone's password.
    const key = `${registry}\n${anonymous ? 'anonymous' : creds ? fingerprint(creds) : 'default'}`;
    let client = clients.get(key);
    if (!client) {
      client = new RegistryClient({
        host: registry, transport,
        ...(anonymous ? { anonymous: true } : creds ? { credentials: creds } : {}),
        credentialOptions: { ...hostCredentials.lookup, cache },
      });
      clients.set(key, client);
    }
    return client;
  };

  const probe: RegistryProbe = {
    probe(registry: string, repository: string, reference: string): Promise<ProbeResult> {
      return clientFor(registry, undefined, true).probe(repository, reference);
    },
    async probeManifest(registry: string, repository: string, reference: string) {
      // Read anonymously only where the build would read anonymously anyway: with a credential for
      // the registry the manifest GET counts against the user's account (Docker Hub's pull quota),
      // not the anonymous one, so the check stays a HEAD (free) and the build GETs it as the user.
      if (await clientFor(registry, undefined).hasCredential(repository)) {
        return { result: await clientFor(registry, undefined, true).probe(repository, reference) };
      }
      const { result, manifest } = await clientFor(registry, undefined, true).probeManifest(repository, reference);
      return { result, ...(manifest ? { manifest: { descriptor: manifest.descriptor, bytes: manifest.bytes } } : {}) };
    },
    async tagFor(registry: string, repository: string, digest: string): Promise<string | undefined> {
      const client = clientFor(registry, undefined);
      const tags = await client.listTags(repository, { max: TAG_LOOKUP_LIMIT });
      const limit = pLimit(DEFAULT_SMALL_REQUESTS);
      const hits = await Promise.all(tags.map((tag) => limit(async () => {
        const d = await client.headManifest(repository, tag).catch(() => undefined);
        return d?.digest === digest ? tag : undefined;
      })));
      return hits.find((t) => t !== undefined);
    },
  };

  return {
    open(source: ImageSource): RegistryStore {
      return new RegistryStore(clientFor(source.registry, source.credentials), source.repository);
    },
    probe,
    async close(): Promise<void> {
      await transport.close();
    },
  };
}

function fingerprint(c: Credentials): string {
  return createHash('sha256').update(`${c.username}\0${c.password}`).digest('hex');
}
