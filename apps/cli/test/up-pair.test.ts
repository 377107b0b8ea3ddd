// `tandem up --teacher/--student`: a pair in two embedding spaces is refused before anything
// starts, naming both spaces and the way out; a pair in one space (or one bundle on both
// sides) is taken. Bundles are manifests in temporary directories, given by path.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { choosePair } from "../src/commands/up.js";

const dir = mkdtempSync(join(tmpdir(), "tandem-cli-pair-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function bundle(name: string, role: "teacher" | "student", space: string, dims: number): string {
  const path = join(dir, name);
  mkdirSync(path);
  writeFileSync(join(path, "model.onnx"), "");
  writeFileSync(join(path, "tokenizer.json"), "{}");
  writeFileSync(
    join(path, "manifest.json"),
    JSON.stringify({
      format: "tandem-bundle/1",
      name,
      model_id: `test/${name}`,
      role,
      space,
      dims,
      hidden_size: dims,
      pooling: "mean",
      normalize: true,
      max_tokens: 128,
      query_prefix: "",
      document_prefix: "",
      precision: "fp32",
      onnx: { file: "model.onnx", output: "last_hidden_state", output_kind: "token" },
      tokenizer: { file: "tokenizer.json" },
      provenance: { onnx_sha256: "0".repeat(64) },
    }),
  );
  return path;
}

const gemma = bundle("gemma", "teacher", "gemma/768", 768);
const mpnet = bundle("mpnet", "teacher", "mpnet/768", 768);
const leaf = bundle("leaf", "student", "mpnet/768", 768);

test("choosePair: a teacher and a student in two spaces are refused, naming both and the symmetric way out", async () => {
  await assert.rejects(
    choosePair({ teacher: gemma, student: leaf }),
    (err: Error) =>
      err.message.includes("the teacher gemma writes documents in gemma/768") &&
      err.message.includes("the student leaf encodes queries in mpnet/768") &&
      err.message.includes("Give --student a bundle in gemma/768") &&
      err.message.includes(`--student ${gemma}`),
  );
});

test("choosePair: one space, or the teacher on both sides, is a pair", async () => {
  assert.deepEqual(await choosePair({ teacher: mpnet, student: leaf }), { teacher: mpnet, student: leaf, note: null });
  assert.deepEqual(await choosePair({ teacher: gemma, student: gemma }), {
    teacher: gemma,
    student: gemma,
    note: null,
  });
});
