import { constants, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { AirgapError } from '../errors.js';

/**
 * Opens a bundle file (a tar, a parts manifest, a part) for reading, refusing anything but a
 * regular file. O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer in a
 * thread the process cannot exit without (SIGTERM then did nothing); a device such as /dev/zero
 * would be read forever. On a regular file the flag changes nothing.
 */
export async function openRegularFile(path: string, what: string, onOpenError: (e: NodeJS.ErrnoException) => AirgapError): Promise<{ fh: FileHandle; size: number }> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw onOpenError(e as NodeJS.ErrnoException);
  }
  try {
    const stat = await fh.stat();
    if (!stat.isFile()) {
      throw new AirgapError('E_BUNDLE', `${what} is ${kindOf(stat)}, not a regular file`,
        { hint: 'give the bundle file itself (a .tar, or the parts manifest of a split bundle, with its parts beside it)' });
    }
    return { fh, size: stat.size };
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
}

function kindOf(s: Stats): string {
  if (s.isFIFO()) return 'a FIFO (named pipe)';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  if (s.isDirectory()) return 'a directory';
  if (s.isSocket()) return 'a socket';
  return 'not a file';
}
