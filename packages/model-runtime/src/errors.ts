/** A model bundle that cannot be loaded; the message names the file and what is wrong. */
export class BundleError extends Error {
  constructor(
    readonly dir: string,
    message: string,
  ) {
    super(`model bundle ${dir}: ${message}`);
    this.name = "BundleError";
  }
}
