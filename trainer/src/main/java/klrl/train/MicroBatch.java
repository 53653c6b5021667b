package klrl.train;

import java.util.ArrayList;
import java.util.List;

/**
 * Some rows of a step's batch, packed and padded only to their own longest row: what one
 * forward (and backward) computes. Per-token arrays of the step stay laid out [rows·R] with the
 * step's R; {@link #gather} reads a micro-batch's rows out of them, {@link #scatter} writes back.
 *
 * <p>{@link #plan} cuts rows [from, to) into micro-batches: with a token budget, rows ordered by
 * length (longest first) and packed while rows × the longest stays within it (see {@link #packed}); else fixed counts of
 * rows in their order. Either way the loss does not change: aggregation weights are computed over
 * the whole mini-batch, so any grouping of its rows adds up to the same loss and gradient.
 */
record MicroBatch(SequenceBatch batch, int[] rows, int stepR) {

    /**
     * Rows per micro-batch without a budget (train.micro_batch_size); with one, padded positions per
     * micro-batch (train.max_tokens_per_micro_batch), a row longer than the budget alone in its own.
     */
    static List<MicroBatch> plan(SequenceBatch all, int from, int to, ReferencePass.Sizes sizes) {
        int maxRows = sizes.rows();
        long maxTokens = sizes.tokens();
        List<int[]> groups = new ArrayList<>();
        if (maxTokens <= 0 || sizes.batchWide()) {
            for (int s = from; s < to; s += maxRows) {
                int[] g = new int[Math.min(maxRows, to - s)];
                for (int i = 0; i < g.length; i++) {
                    g[i] = s + i;
                }
                groups.add(g);
            }
        } else {
            int[] prompt = new int[all.rows()], response = new int[all.rows()];
            for (int i = from; i < to; i++) {
                prompt[i] = all.promptLength(i);
                response[i] = all.responseLength(i);
            }
            groups.addAll(packed(prompt, response, from, to, maxTokens));
        }
        List<MicroBatch> out = new ArrayList<>(groups.size());
        for (int[] g : groups) {
            out.add(new MicroBatch(sizes.batchWide() ? all.slice(g[0], g[0] + g.length) : all.rows(g), g, all.r()));
        }
        return out;
    }

    /**
     * Rows [from, to) packed within {@code maxTokens} padded positions: ordered longest row (prompt +
     * response) first, ties by row, then cut into runs of neighbours — each run padded to its first
     * (longest) row, rows × that length within the budget, a longer row alone — choosing, by dynamic
     * programming over the cut points, the fewest micro-batches and among those the fewest padded
     * positions (a greedy fill reaches the same count but pads where its cuts fall). Neighbours in
     * length pad little, and rounds over replicas carry alike work.
     */
    private static List<int[]> packed(int[] prompt, int[] response, int from, int to, long maxTokens) {
        int[] len = new int[prompt.length];
        List<Integer> order = new ArrayList<>();
        for (int i = from; i < to; i++) {
            len[i] = prompt[i] + Math.max(1, response[i]);
            order.add(i);
        }
        order.sort((a, b) -> len[a] != len[b] ? Integer.compare(len[b], len[a]) : Integer.compare(a, b));
        int n = order.size();
        long[] cost = new long[n + 1];
        int[] groups = new int[n + 1], cut = new int[n + 1];
        java.util.Arrays.fill(cost, Long.MAX_VALUE);
        cost[0] = 0;
        for (int j = 1; j <= n; j++) {        // best packing of the first j rows: a run [i, j) after the best of the first i
            for (int i = j - 1; i >= 0; i--) {
                long padded = (long) (j - i) * len[order.get(i)];
                if (j - i > 1 && padded > maxTokens) {
                    break;                    // longer runs from further back only grow
                }
                long c = cost[i] + padded;
                if (cost[j] == Long.MAX_VALUE || groups[i] + 1 < groups[j] || (groups[i] + 1 == groups[j] && c < cost[j])) {
                    cost[j] = c;
                    groups[j] = groups[i] + 1;
                    cut[j] = i;
                }
            }
        }
        java.util.LinkedList<int[]> out = new java.util.LinkedList<>();
        for (int j = n; j > 0; j = cut[j]) {
            int[] g = new int[j - cut[j]];
            for (int k = cut[j]; k < j; k++) {
                g[k - cut[j]] = order.get(k);
            }
            out.addFirst(g);
        }
        return new ArrayList<>(out);
    }

    /** This micro-batch's rows of a step-wide per-token array, laid out [rows·r] with its own r. */
    float[] gather(float[] stepValues) {
        int r = batch.r();
        float[] v = new float[rows.length * r];
        for (int k = 0; k < rows.length; k++) {
            System.arraycopy(stepValues, rows[k] * stepR, v, k * r, Math.min(r, stepR));
        }
        return v;
    }

    /** Writes this micro-batch's per-token values ([rows·r]) into the step-wide array. */
    void scatter(float[] values, float[] stepValues) {
        int r = batch.r();
        for (int k = 0; k < rows.length; k++) {
            System.arraycopy(values, k * r, stepValues, rows[k] * stepR, Math.min(r, stepR));
        }
    }

    /** Positions the forward computes: rows × the row width (P' + R', or a packed batch's longest row). */
    long positions() {
        return (long) rows.length * (batch.p() + batch.r());
    }

    /** Real tokens among them: every row's prompt and response. */
    long tokens() {
        long t = 0;
        for (long v : batch.valid()) {
            t += v;
        }
        return t;
    }

    /** Response tokens (what the loss averages over). */
    double responseTokens() {
        double t = 0;
        for (float m : batch.responseMask()) {
            t += m;
        }
        return t;
    }
}
