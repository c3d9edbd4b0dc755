/**
 * The control plane's files are its user's alone: directories 0700, files 0600.
 * Modes are set explicitly where files are made, never left to the umask (a
 * service started with umask 000 must not publish customers' datasets). The
 * process umask is left alone on purpose: `npm start` spawns the local agent,
 * whose unit work directories must stay readable by the user units run as.
 */
import { access, chmod, lstat, mkdir, opendir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** Mode of every directory the control plane creates. */
export const privateDirMode = 0o700;
/** Mode of every file the control plane creates. */
export const privateFileMode = 0o600;

/** Bits that let anyone but the owner in. */
const othersBits = 0o077;

/** Creates `dir` (and missing parents) as a private directory; an existing one is chmod-ed to 0700. */
export async function makePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: privateDirMode });
  // mkdir's mode passes through the umask, and an existing directory keeps its mode: set it outright.
  await chmod(dir, privateDirMode);
}

/** Errors of a chmod or a listing that mean "not ours to change": the walk goes on without it. */
const notOurs = new Set(["EPERM", "EACCES", "EROFS"]);

/**
 * Makes everything under `root` (root included) that this user owns private:
 * directories 0700, files 0600. Symbolic links are not followed (`root`
 * itself may be a link to the real directory). Entries of another user are
 * left as they are, though a directory of another user is still searched for
 * ours (a Kubernetes volume's root belongs to root); so are entries on a
 * read-only mount (a mounted secret). Returns how many modes changed.
 */
export async function tightenTree(root: string): Promise<number> {
  const uid = process.getuid?.();
  let changed = 0;
  const visit = async (path: string, isRoot: boolean): Promise<void> => {
    let info;
    try {
      info = isRoot ? await stat(path) : await lstat(path);
    } catch (error) {
      // Gone meanwhile (a blob deleted, a temporary file renamed): nothing left to protect.
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      throw error;
    }
    if (info.isSymbolicLink()) return;
    const ours = uid === undefined || info.uid === uid;
    const directory = info.isDirectory();
    if (directory) {
      let entries;
      try {
        entries = await opendir(path);
      } catch (error) {
        if (!ours && notOurs.has((error as NodeJS.ErrnoException).code ?? "")) return;
        throw error;
      }
      for await (const entry of entries) await visit(join(path, entry.name), false);
    }
    if (!ours) return;
    const mode = info.mode & 0o7777;
    // Only loose modes change: a file the owner made stricter (0400) stays so.
    if ((mode & othersBits) !== 0 || (mode & ~0o777) !== 0 || (directory && (mode & 0o700) !== 0o700)) {
      try {
        await chmod(path, directory ? privateDirMode : privateFileMode);
        changed++;
      } catch (error) {
        if (!notOurs.has((error as NodeJS.ErrnoException).code ?? "")) throw error;
      }
    }
  };
  await visit(root, true);
  return changed;
}

/** Left in a data directory whose own mode cannot record that the walk was done (its root is not ours). */
export const tightenedMarker = ".private-modes";

/**
 * Prepares a data directory at start: created private when missing; when it
 * exists with loose modes (made by a version that left modes to the umask),
 * everything in it is tightened once — the directory itself last, so its own
 * private mode records that the walk finished and later starts skip it. A
 * directory that is not ours (a volume's root, owned by root) cannot be
 * chmod-ed: a marker file records the walk instead, so a shared blob volume is
 * not walked at every start. Returns how many modes changed.
 */
export async function preparePrivateDataDir(dir: string): Promise<number> {
  let info;
  try {
    info = await stat(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    await makePrivateDir(dir);
    return 0;
  }
  if ((info.mode & othersBits) === 0) return 0;
  const uid = process.getuid?.();
  if (uid === undefined || info.uid === uid) return tightenTree(dir);
  const marker = join(dir, tightenedMarker);
  try {
    await access(marker);
    return 0;
  } catch {
    // Not walked yet.
  }
  const changed = await tightenTree(dir);
  // A directory we cannot write in has nothing of ours to protect either; it is walked again next time.
  await writeFile(marker, "the files of this directory were made private (0700/0600) once; later starts skip the walk\n", { mode: privateFileMode }).catch(() => undefined);
  return changed;
}
