export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  DockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** Layer media types that registries need not distribute (their descriptors carry `urls`). */
export const NON_DISTRIBUTABLE: ReadonlySet<string> = new Set([
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
]);

/** Sent as Accept on every manifest request, most preferred first. */
export const MANIFEST_ACCEPT = [
  MediaType.OciIndex,
  MediaType.DockerManifestList,
  MediaType.OciManifest,
  MediaType.DockerManifest,
].join(', ');

export function isIndexType(mt: string): boolean {
  return mt === MediaType.OciIndex || mt === MediaType.DockerManifestList;
}

export function isManifestType(mt: string): boolean {
  return mt === MediaType.OciManifest || mt === MediaType.DockerManifest;
}

export function isSchema1(mt: string): boolean {
  return mt === MediaType.DockerSchema1 || mt === MediaType.DockerSchema1Signed;
}

/** Strips parameters (`; charset=utf-8`) and lower-cases a Content-Type. */
export function bareMediaType(contentType: string | null | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}
