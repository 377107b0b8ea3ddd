import { status } from "@grpc/grpc-js";
import { type Indexer, isRpcError } from "@tandem/client";
import { checkServedDims, resolveBundle, spaceAt } from "@tandem/model-runtime";
import { address } from "./addresses.js";
import { indexerClient } from "./clients.js";
import { bundlePath } from "./paths.js";

/** The embedding space a collection is created in, and who writes vectors of it (for messages). */
export interface TargetSpace {
  space: string;
  dims: number;
  /** Where the space was taken from, for messages: e.g. "the indexer's teacher all-mpnet-base-v2-int8", "--space". */
  from: string;
}

export interface SpaceFlags {
  /** Take the space from this bundle's manifest instead of the running indexer. */
  teacher?: string;
  /** Explicit space id; needs `dims`. */
  space?: string;
  /** With `space`: its width. With `teacher`: one of the bundle's Matryoshka sizes. */
  dims?: number;
  indexer?: string;
}

/**
 * The space a new collection gets. By default the running indexer's teacher's, so that what the
 * indexer writes fits it; `--teacher` reads a bundle's manifest instead (no indexer needed), and
 * only `--space` with `--dims` sets one by hand.
 */
export async function targetSpace(flags: SpaceFlags): Promise<TargetSpace> {
  if (flags.space) {
    if (!flags.dims) throw new Error("--space needs --dims: the width of the vectors the collection holds");
    return { space: flags.space, dims: flags.dims, from: "--space" };
  }
  if (flags.teacher) {
    const { manifest } = await resolveBundle(bundlePath(flags.teacher));
    const dims = flags.dims ?? manifest.dims;
    const problem = checkServedDims(manifest, dims);
    if (problem) throw new Error(problem);
    return { space: spaceAt(manifest, dims), dims, from: `the bundle ${manifest.name}` };
  }
  if (flags.dims) {
    throw new Error(
      "--dims needs --space (a space by hand) or --teacher (a Matryoshka size of that bundle): the indexer's teacher writes at the width it serves",
    );
  }
  const addr = address("indexer", flags.indexer);
  const indexer = indexerClient(addr);
  try {
    return await indexerSpace(indexer, addr);
  } catch (err) {
    if (isRpcError(err, status.UNAVAILABLE)) {
      throw new Error(
        `the space comes from the indexer's teacher, and nothing answers at ${addr} (${err.details}). ` +
          "Start the stack (pnpm tandem up), or name the space: --teacher BUNDLE, or --space ID --dims N",
      );
    }
    throw err;
  } finally {
    indexer.close();
  }
}

/** The space the running indexer's teacher writes (its ModelCard, from Indexer.Info). */
export async function indexerSpace(indexer: Indexer, addr: string): Promise<TargetSpace> {
  const { teacher } = await indexer.info();
  if (!teacher) throw new Error(`the indexer at ${addr} reports no teacher`);
  return { space: teacher.space, dims: teacher.dims, from: `the indexer's teacher ${teacher.bundleName}` };
}
