import type { FieldMatch, Scalar } from "@tandem/proto";
import { InvalidArgumentError } from "@tandem/service-kit";

/**
 * Payload filtering: an in-memory inverted index (top-level field -> scalar
 * value -> keys) kept next to the HNSW index, and the compiled form of a
 * request's filter (AND of clauses, each an any_of over scalars).
 *
 * Strings longer than `maxStringBytes` are not indexed (document texts would
 * make the index as large as the corpus); a filter value that long is refused,
 * so the index always answers every filter it accepts exactly.
 */

type ValueKey = string;

function valueKey(v: unknown, maxStringBytes: number): ValueKey | undefined {
  switch (typeof v) {
    case "string":
      return Buffer.byteLength(v, "utf8") <= maxStringBytes ? `s${v}` : undefined;
    case "number":
      return `n${v}`;
    case "boolean":
      return v ? "bt" : "bf";
    default:
      return undefined;
  }
}

/** The scalar values a top-level payload field contributes: itself, or each element of an array. */
function* fieldValues(payload: Record<string, unknown>, maxStringBytes: number): Iterable<[string, ValueKey]> {
  for (const [field, value] of Object.entries(payload)) {
    const items = Array.isArray(value) ? value : [value];
    for (const item of items) {
      const vk = valueKey(item, maxStringBytes);
      if (vk !== undefined) yield [field, vk];
    }
  }
}

export class PayloadIndex {
  private readonly fields = new Map<string, Map<ValueKey, Set<number>>>();

  constructor(private readonly maxStringBytes: number) {}

  add(key: number, payload: Record<string, unknown>): void {
    for (const [field, vk] of fieldValues(payload, this.maxStringBytes)) {
      let values = this.fields.get(field);
      if (!values) {
        values = new Map();
        this.fields.set(field, values);
      }
      let keys = values.get(vk);
      if (!keys) {
        keys = new Set();
        values.set(vk, keys);
      }
      keys.add(key);
    }
  }

  remove(key: number, payload: Record<string, unknown>): void {
    for (const [field, vk] of fieldValues(payload, this.maxStringBytes)) {
      const values = this.fields.get(field);
      const keys = values?.get(vk);
      if (!keys) continue;
      keys.delete(key);
      if (keys.size === 0) values!.delete(vk);
      if (values!.size === 0) this.fields.delete(field);
    }
  }

  /** The key sets of one clause (their union is the clause's matching set). */
  setsOf(clause: CompiledClause): Set<number>[] {
    const values = this.fields.get(clause.field);
    if (!values) return [];
    return clause.values.flatMap((vk) => values.get(vk) ?? []);
  }
}

export interface CompiledClause {
  field: string;
  values: ValueKey[];
}

export interface FilterLimits {
  maxClauses: number;
  maxValues: number;
  maxStringBytes: number;
}

/** Validates a request's filter; an empty filter compiles to `null` (match all). */
export function compileFilter(filter: FieldMatch[], limits: FilterLimits): CompiledClause[] | null {
  if (filter.length === 0) return null;
  if (filter.length > limits.maxClauses) {
    throw new InvalidArgumentError(`filter has ${filter.length} clauses; the limit is ${limits.maxClauses}`);
  }
  let total = 0;
  return filter.map((m, i) => {
    if (m.field === "") throw new InvalidArgumentError(`filter clause ${i} has an empty field name`);
    if (m.anyOf.length === 0) throw new InvalidArgumentError(`filter clause ${i} (${m.field}) has no any_of values`);
    total += m.anyOf.length;
    if (total > limits.maxValues) {
      throw new InvalidArgumentError(`filter has more than ${limits.maxValues} any_of values in total`);
    }
    return { field: m.field, values: m.anyOf.map((s) => scalarKey(s, m.field, limits.maxStringBytes)) };
  });
}

function scalarKey(s: Scalar, field: string, maxStringBytes: number): ValueKey {
  const kind = s.kind;
  if (!kind) throw new InvalidArgumentError(`filter value for ${field} has no kind set`);
  if (kind.$case === "numberValue" && !Number.isFinite(kind.value)) {
    throw new InvalidArgumentError(`filter value for ${field} is not a finite number`);
  }
  const vk = valueKey(kind.value, maxStringBytes);
  if (vk === undefined) {
    throw new InvalidArgumentError(
      `filter string value for ${field} is longer than ${maxStringBytes} bytes (FILTER_MAX_STRING_BYTES)`,
    );
  }
  return vk;
}

/**
 * A compiled filter against one collection's index: an upper bound on the
 * matching set's size (to choose exact scan vs HNSW over-fetch), a membership
 * test, and the matching set itself.
 */
export class FilterPlan {
  private readonly clauses: Set<number>[][];

  constructor(index: PayloadIndex, compiled: CompiledClause[]) {
    // Cheapest clause first: it drives materialisation and fails the test soonest.
    this.clauses = compiled
      .map((c) => index.setsOf(c))
      .sort((a, b) => a.reduce((s, x) => s + x.size, 0) - b.reduce((s, x) => s + x.size, 0));
  }

  /** An upper bound on the number of matching points (exact for one clause with one value). */
  get estimate(): number {
    const first = this.clauses[0];
    return first ? first.reduce((s, x) => s + x.size, 0) : 0;
  }

  matches(key: number): boolean {
    for (const sets of this.clauses) {
      let hit = false;
      for (const s of sets) {
        if (s.has(key)) {
          hit = true;
          break;
        }
      }
      if (!hit) return false;
    }
    return true;
  }

  /** Every matching key. */
  materialize(): number[] {
    const first = this.clauses[0];
    if (!first) return [];
    const out = new Set<number>();
    for (const s of first) for (const key of s) if (!out.has(key) && this.matches(key)) out.add(key);
    return [...out];
  }
}
