// Wire format of every vector in the API: packed little-endian float32.

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

export function vectorByteLength(dims: number): number {
  return dims * 4;
}

export function encodeVector(vector: Float32Array): Buffer {
  if (LITTLE_ENDIAN_HOST) {
    return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
  }
  const out = Buffer.allocUnsafe(vector.length * 4);
  for (let i = 0; i < vector.length; i++) out.writeFloatLE(vector[i] ?? 0, i * 4);
  return out;
}

/**
 * Decodes packed little-endian float32 bytes. Returns an error string (for an
 * INVALID_ARGUMENT status) when the length is not a whole number of floats, or
 * does not match `dims` when given, or a value is not finite.
 */
export function decodeVector(bytes: Uint8Array, dims?: number): Float32Array | string {
  if (bytes.byteLength % 4 !== 0) {
    return `vector has ${bytes.byteLength} bytes, not a multiple of 4 (expected packed little-endian float32)`;
  }
  const n = bytes.byteLength / 4;
  if (dims !== undefined && n !== dims) {
    return `vector has ${n} dimensions, expected ${dims}`;
  }
  // Copy: the source may be an unaligned view into a gRPC frame.
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < n; i++) {
    const v = view.getFloat32(i * 4, true);
    if (!Number.isFinite(v)) return `vector component ${i} is ${v}; all components must be finite`;
    out[i] = v;
  }
  return out;
}
