// Builds examples/tandem-docs/corpus.jsonl, the example corpus `tandem up` indexes: the
// repository's own Markdown documentation (Apache-2.0, like the rest of the repository) cut into
// BEIR documents ({"_id", "title", "text"}) of about 40-200 words, one per paragraph group of a
// section. The title is the file and its heading path; the id is the file, the heading's GitHub
// anchor and the chunk's number in that section (`README.md#quickstart/1`), so an edit renumbers
// only the chunks of its own section.
//
// Generated blocks (`<!-- generated:NAME -->`: configuration tables, eval tables, benchmark output)
// are left out: they are machine output, and regenerating a figure then does not change the corpus.
// The output depends only on the Markdown files, so it is the same on every machine; a test
// (test/docs/example-corpus.test.ts) fails when the committed file differs from what this writes.
// Usage: pnpm example-corpus           rewrite the corpus when it changed
//        pnpm example-corpus --check   exit 1 when it differs from what would be written
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

export interface CorpusDoc {
  _id: string;
  title: string;
  text: string;
}

const ROOT = join(import.meta.dirname, "..");
/** Where the corpus is written, relative to the repository root. */
export const CORPUS_FILE = "examples/tandem-docs/corpus.jsonl";
/** A chunk is closed once it holds this many words... */
const MIN_WORDS = 40;
/** ...and never grows past this many (a longer paragraph is cut at sentence ends). */
const MAX_WORDS = 200;
/** Info strings of fenced blocks that hold commands, not documentation. */
const SHELL = new Set(["bash", "sh", "shell", "console"]);

/**
 * The documentation the corpus is cut from, relative to the root: the top-level README, the
 * READMEs one and two folders down (services/*, training, deploy, ...) and docs/*.md. Not the
 * example corpus's own README, nor anything under node_modules, .cache or a dot folder.
 */
export function sourceFiles(root = ROOT): string[] {
  const skip = new Set(["node_modules", ".cache", "examples", "docs", "dist"]);
  const below = (dir: string, depth: number): string[] =>
    readdirSync(join(root, dir), { withFileTypes: true })
      .filter((e) => e.isDirectory() && !skip.has(e.name) && !e.name.startsWith("."))
      .map((e) => e.name)
      .sort()
      .flatMap((name) => {
        const sub = dir ? `${dir}/${name}` : name;
        const own = existsSync(join(root, sub, "README.md")) ? [`${sub}/README.md`] : [];
        return depth > 1 ? [...own, ...below(sub, depth - 1)] : own;
      });
  const docs = existsSync(join(root, "docs"))
    ? readdirSync(join(root, "docs"))
        .filter((f) => f.endsWith(".md"))
        .sort()
        .map((f) => `docs/${f}`)
    : [];
  return ["README.md", ...below("", 2), ...docs];
}

const words = (s: string): number => (s.match(/\S+/g) ?? []).length;
const squash = (s: string): string => s.replace(/\s+/g, " ").trim();

/** Inline Markdown to plain text: code spans keep their content verbatim; links, emphasis and images lose their markup. */
export function plainText(md: string): string {
  return md
    .split(/(`+[^`]*?`+)/)
    .map((part, i) => {
      if (i % 2 === 1) return part.replace(/^`+\s?|\s?`+$/g, "");
      return part
        .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
        .replace(/\*\*/g, "")
        .replace(/(^|[\s(])[*_]([^*_\s][^*_]*?)[*_](?=[\s.,;:!?)]|$)/g, "$1$2");
    })
    .join("");
}

/** GitHub's heading anchor: lower case, punctuation dropped, each space a hyphen. */
export function anchor(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/ /g, "-");
}

interface Section {
  /** Headings from the file's H1 down to this section's. */
  path: string[];
  anchor: string;
  /** Paragraphs, list items, table rows and code blocks, as plain text. */
  blocks: string[];
}

function tableCells(line: string): string[] {
  return line
    .trim()
    .replace(/^\||\|$/g, "")
    .split("|")
    .map((c) => c.trim());
}

/** A Markdown file as its sections, each a list of text blocks (the structure the chunks follow). */
export function sections(markdown: string): Section[] {
  const lines = markdown
    .replace(/<!-- generated:([\w-]+) -->[\s\S]*?<!-- \/generated:\1 -->/g, "")
    .replace(/<!--[\s\S]*?-->/g, "")
    .split("\n");
  const out: Section[] = [];
  const anchors = new Map<string, number>();
  let current: Section = { path: [], anchor: "", blocks: [] };
  let para: string[] = [];
  let header: string[] | null = null;
  const flush = () => {
    const text = squash(plainText(para.join(" ")));
    if (text) current.blocks.push(text);
    para = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const fence = line.match(/^\s*(```+|~~~+)\s*(\S*)/);
    if (fence) {
      flush();
      const close = fence[1] as string;
      const body: string[] = [];
      for (i++; i < lines.length && !(lines[i] as string).trimStart().startsWith(close); i++) {
        body.push(lines[i] as string);
      }
      // Commands to type are left out (the README's example search would find itself); file trees,
      // diagrams and source maps stay.
      const text = SHELL.has(fence[2] as string) ? "" : squash(body.join("\n"));
      if (text) current.blocks.push(text);
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (heading) {
      flush();
      header = null;
      const level = (heading[1] as string).length;
      const title = squash(plainText(heading[2] as string));
      const base = anchor(title);
      const seen = anchors.get(base) ?? 0;
      anchors.set(base, seen + 1);
      current = {
        path: [...current.path.slice(0, level - 1), title],
        anchor: seen ? `${base}-${seen}` : base,
        blocks: [],
      };
      out.push(current);
      continue;
    }
    if (/^\s*\|/.test(line)) {
      flush();
      const cells = tableCells(line);
      if (cells.every((c) => /^:?-+:?$/.test(c))) continue;
      if (!header) {
        header = cells;
        continue;
      }
      // A row as "first cell: header: cell; header: cell", which reads as a sentence and keeps the column names.
      const [first, ...rest] = cells.map((c) => squash(plainText(c)));
      const named = rest
        .map((c, j) => (c && c !== "—" && c !== "-" ? `${squash(plainText(header?.[j + 1] ?? ""))}: ${c}` : ""))
        .filter(Boolean);
      current.blocks.push([first, named.join("; ")].filter(Boolean).join(" — "));
      continue;
    }
    header = null;
    if (!line.trim()) {
      flush();
      continue;
    }
    // A list item starts a block of its own; its indented continuation lines join it.
    if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
      flush();
      para.push(line.replace(/^\s*([-*+]|\d+[.)])\s+/, ""));
      continue;
    }
    para.push(line.replace(/^\s*>\s?/, ""));
  }
  flush();
  return out.filter((s) => s.blocks.length > 0);
}

/** A block over MAX_WORDS, cut at sentence ends (or, for one endless sentence, at MAX_WORDS words). */
function splitLong(block: string): string[] {
  if (words(block) <= MAX_WORDS) return [block];
  const sentences = block.split(/(?<=[.!?;])\s+(?=\S)/).flatMap((s) => {
    const w = s.split(" ");
    const parts: string[] = [];
    for (let i = 0; i < w.length; i += MAX_WORDS) parts.push(w.slice(i, i + MAX_WORDS).join(" "));
    return parts;
  });
  // As many pieces as the length needs, filled evenly so the last is not a scrap.
  const pieces = Math.ceil(words(block) / MAX_WORDS);
  const target = words(block) / pieces;
  const out: string[] = [];
  let cur: string[] = [];
  for (const s of sentences) {
    const n = words(cur.join(" "));
    if (cur.length && (n + words(s) > MAX_WORDS || n >= target)) {
      out.push(cur.join(" "));
      cur = [];
    }
    cur.push(s);
  }
  if (cur.length) out.push(cur.join(" "));
  return out;
}

/** A section's blocks packed into chunks of MIN_WORDS..MAX_WORDS words, in order; a short tail joins the chunk before. */
function pack(blocks: string[]): string[] {
  const chunks: string[][] = [];
  let cur: string[] = [];
  const size = (b: string[]) => words(b.join(" "));
  for (const block of blocks.flatMap(splitLong)) {
    if (cur.length && size(cur) + words(block) > MAX_WORDS) {
      chunks.push(cur);
      cur = [];
    }
    cur.push(block);
    if (size(cur) >= MIN_WORDS) {
      chunks.push(cur);
      cur = [];
    }
  }
  if (cur.length) {
    const last = chunks.at(-1);
    if (last && size(cur) < MIN_WORDS && size(last) + size(cur) <= MAX_WORDS) last.push(...cur);
    else chunks.push(cur);
  }
  return chunks.map((c) => c.join(" "));
}

/** One Markdown file as corpus documents. */
export function chunkMarkdown(file: string, markdown: string): CorpusDoc[] {
  const docs: CorpusDoc[] = [];
  for (const s of sections(markdown)) {
    // The H1 only names the document; below it, the path from the first sub-heading reads better.
    const path = s.path.length > 1 ? s.path.slice(1) : s.path;
    const title = [file, ...path].join(" › ");
    pack(s.blocks).forEach((text, i) => {
      docs.push({ _id: `${file}#${s.anchor}/${i + 1}`, title, text });
    });
  }
  return docs;
}

/** The whole corpus: every source file's documents, in file order. */
export function buildExampleCorpus(root = ROOT): CorpusDoc[] {
  return sourceFiles(root).flatMap((file) => chunkMarkdown(file, readFileSync(join(root, file), "utf8")));
}

/** The corpus as the JSONL file holds it: one document per line, keys in BEIR order. */
export function corpusJsonl(docs: CorpusDoc[]): string {
  return docs
    .map((d) => JSON.stringify({ _id: d._id, title: d.title, text: d.text }))
    .join("\n")
    .concat("\n");
}

if (process.argv[1] === import.meta.filename) {
  const docs = buildExampleCorpus();
  const next = corpusJsonl(docs);
  const path = join(ROOT, CORPUS_FILE);
  const current = existsSync(path) ? readFileSync(path, "utf8") : "";
  if (process.argv.includes("--check")) {
    if (current !== next) {
      process.stderr.write(`${CORPUS_FILE} is out of date with the documentation: run \`pnpm example-corpus\`\n`);
      process.exit(1);
    }
  } else if (current !== next) {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, next);
    process.stdout.write(`${CORPUS_FILE}: ${docs.length} documents from ${sourceFiles().join(", ")}\n`);
  } else {
    process.stdout.write(`${CORPUS_FILE} is up to date (${docs.length} documents)\n`);
  }
}
