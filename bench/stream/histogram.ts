/**
 * A latency histogram that client processes fill and the bench merges: 10 µs buckets up to 1 s
 * (exact values kept above that), so percentiles of millions of samples cost a few hundred KB
 * and cross the IPC channel as a sparse list.
 */

const RES_US = 10;
const BUCKETS = 100_000; // 10 µs × 100,000 = 1 s

/** The wire form of a histogram: non-empty buckets as [index, count] pairs flattened. */
export interface SparseHistogram {
  n: number;
  sumUs: number;
  maxUs: number;
  /** Samples below zero (clock trouble); recorded as 0. */
  negative: number;
  buckets: number[];
  overflowUs: number[];
}

export class Histogram {
  private counts = new Uint32Array(BUCKETS);
  private overflow: number[] = [];
  n = 0;
  sumUs = 0;
  maxUs = 0;
  negative = 0;

  record(us: number): void {
    let v = us;
    if (v < 0) {
      this.negative++;
      v = 0;
    }
    this.n++;
    this.sumUs += v;
    if (v > this.maxUs) this.maxUs = v;
    const i = Math.floor(v / RES_US);
    if (i < BUCKETS) this.counts[i] = (this.counts[i] ?? 0) + 1;
    else this.overflow.push(v);
  }

  reset(): void {
    this.counts.fill(0);
    this.overflow = [];
    this.n = 0;
    this.sumUs = 0;
    this.maxUs = 0;
    this.negative = 0;
  }

  toSparse(): SparseHistogram {
    const buckets: number[] = [];
    for (let i = 0; i < BUCKETS; i++) {
      const c = this.counts[i] ?? 0;
      if (c > 0) buckets.push(i, c);
    }
    return {
      n: this.n,
      sumUs: this.sumUs,
      maxUs: this.maxUs,
      negative: this.negative,
      buckets,
      overflowUs: [...this.overflow],
    };
  }

  add(s: SparseHistogram): void {
    this.n += s.n;
    this.sumUs += s.sumUs;
    this.maxUs = Math.max(this.maxUs, s.maxUs);
    this.negative += s.negative;
    for (let k = 0; k + 1 < s.buckets.length; k += 2) {
      const i = s.buckets[k] ?? 0;
      this.counts[i] = (this.counts[i] ?? 0) + (s.buckets[k + 1] ?? 0);
    }
    for (const v of s.overflowUs) this.overflow.push(v);
  }

  /** Nearest-rank percentile in ms (upper edge of the 10 µs bucket, never above the max). */
  percentileMs(p: number): number {
    if (this.n === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil((p / 100) * this.n));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i] ?? 0;
      if (seen >= rank) return Math.min((i + 1) * RES_US, this.maxUs) / 1000;
    }
    const sorted = [...this.overflow].sort((a, b) => a - b);
    return (sorted[rank - seen - 1] ?? this.maxUs) / 1000;
  }

  get meanMs(): number {
    return this.n === 0 ? Number.NaN : this.sumUs / this.n / 1000;
  }

  get maxMs(): number {
    return this.n === 0 ? Number.NaN : this.maxUs / 1000;
  }
}
