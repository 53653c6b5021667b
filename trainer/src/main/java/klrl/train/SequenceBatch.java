package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.util.List;
import klrl.model.Decoder;

/**
 * Prompt + response sequences laid out for a training forward pass, P + R columns a row.
 *
 * <p>A step's batch ({@link #of}): prompts left-padded to P, responses right-padded to R, so response
 * token j of every row sits at column P + j and is predicted from column P − 1 + j. A micro-batch
 * ({@link #rows}) is packed instead: each row's prompt and response side by side from column 0, padded
 * on the right to the longest row, so a row costs its own length, not its prompt's share of the
 * longest prompt plus its response's share of the longest response; {@code starts[i]} is where row
 * i's response begins (its prompt's length). Per-token arrays ({@link #tensor}, {@link #mask}) are
 * [rows, R] in both layouts.
 */
public record SequenceBatch(long[] tokens, long[] valid, float[] responseMask, long[] responseIds, int rows, int p, int r,
                            int[] starts) {

    public SequenceBatch(long[] tokens, long[] valid, float[] responseMask, long[] responseIds, int rows, int p, int r) {
        this(tokens, valid, responseMask, responseIds, rows, p, r, null);
    }

    public static SequenceBatch of(List<long[]> prompts, List<long[]> responses, int padId) {
        int n = prompts.size();
        int p = prompts.stream().mapToInt(a -> a.length).max().orElse(1);
        int r = Math.max(1, responses.stream().mapToInt(a -> a.length).max().orElse(1));
        long[] tokens = new long[n * (p + r)], valid = new long[n * (p + r)], resp = new long[n * r];
        float[] mask = new float[n * r];
        java.util.Arrays.fill(tokens, padId);
        for (int i = 0; i < n; i++) {
            long[] pr = prompts.get(i), rs = responses.get(i);
            int off = i * (p + r) + (p - pr.length);
            for (int j = 0; j < pr.length; j++) {
                tokens[off + j] = pr[j];
                valid[off + j] = 1;
            }
            for (int j = 0; j < rs.length; j++) {
                tokens[i * (p + r) + p + j] = rs[j];
                valid[i * (p + r) + p + j] = 1;
                resp[i * r + j] = rs[j];
                mask[i * r + j] = 1;
            }
        }
        return new SequenceBatch(tokens, valid, mask, resp, n, p, r);
    }

    /** A rollout's samples, one row each. */
    public static SequenceBatch of(List<klrl.rollout.Sample> samples, int padId) {
        return of(samples.stream().map(klrl.rollout.Sample::promptIds).toList(),
                samples.stream().map(klrl.rollout.Sample::responseIds).toList(), padId);
    }

    /** Per-response-token values of each row (as long as its response, or shorter) laid out [rows·R], zeros on padding. */
    public float[] perToken(List<float[]> rowValues) {
        float[] v = new float[rows * r];
        for (int i = 0; i < rows; i++) {
            float[] s = rowValues.get(i);
            System.arraycopy(s, 0, v, i * r, s.length);
        }
        return v;
    }

    /** Row i's prompt length (its real tokens left of column P). */
    public int promptLength(int i) {
        if (starts != null) {
            return starts[i];
        }
        int n = 0, w = p + r;
        for (int j = 0; j < p; j++) {
            n += (int) valid[i * w + j];
        }
        return n;
    }

    /** Row i's response length. */
    public int responseLength(int i) {
        int n = 0;
        for (int j = 0; j < r; j++) {
            n += (int) responseMask[i * r + j];
        }
        return n;
    }

    /**
     * The given rows as a packed batch: each row's prompt then response from column 0, padded on the
     * right to the longest row's length (W ≤ P + R); R' is the longest response among them.
     */
    public SequenceBatch rows(int[] idx) {
        int n = idx.length, w2 = 1, r2 = 1;
        int[] pl = new int[n], rl = new int[n];
        for (int k = 0; k < n; k++) {
            pl[k] = promptLength(idx[k]);
            rl[k] = responseLength(idx[k]);
            w2 = Math.max(w2, pl[k] + rl[k]);
            r2 = Math.max(r2, rl[k]);
        }
        int w = p + r;
        long[] t = new long[n * w2], v = new long[n * w2], ids = new long[n * r2];
        float[] mask = new float[n * r2];
        java.util.Arrays.fill(t, padId());
        for (int k = 0; k < n; k++) {
            int i = idx[k], src = starts == null ? i * w + (p - pl[k]) : i * w;
            System.arraycopy(tokens, src, t, k * w2, pl[k]);
            System.arraycopy(tokens, responseColumn(i), t, k * w2 + pl[k], rl[k]);
            java.util.Arrays.fill(v, k * w2, k * w2 + pl[k] + rl[k], 1L);
            System.arraycopy(responseIds, i * r, ids, k * r2, Math.min(r, r2));
            System.arraycopy(responseMask, i * r, mask, k * r2, Math.min(r, r2));
        }
        return new SequenceBatch(t, v, mask, ids, n, w2 - r2, r2, pl);
    }

    /** The flat index of row i's first response token. */
    private int responseColumn(int i) {
        return i * (p + r) + (starts == null ? p : starts[i]);
    }

    /** The pad token (what fills a padded column), read from a row with padding, else 0. */
    private long padId() {
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < p + r; j++) {
                if (valid[i * (p + r) + j] == 0) {
                    return tokens[i * (p + r) + j];
                }
            }
        }
        return 0;
    }

    /** Rows [from, to) as a new batch with the same P and R (of a step's batch, not a packed one). */
    public SequenceBatch slice(int from, int to) {
        if (starts != null) {
            throw new IllegalStateException("slice of a packed batch");
        }
        int w = p + r;
        return new SequenceBatch(java.util.Arrays.copyOfRange(tokens, from * w, to * w),
                java.util.Arrays.copyOfRange(valid, from * w, to * w),
                java.util.Arrays.copyOfRange(responseMask, from * r, to * r),
                java.util.Arrays.copyOfRange(responseIds, from * r, to * r), to - from, p, r);
    }

    public NDArray mask(NDManager m) {
        return m.create(responseMask, new Shape(rows, r));
    }

    /** The pass of a full training forward over this batch: positions count real tokens, padding is masked. */
    public Decoder.Pass pass(Decoder model, NDArray tokens, NDManager m) {
        NDArray valid = valid(m);
        NDArray positions = valid.cumSum(1).sub(1).maximum(0);
        // packed rows are right-padded: causal attention is exact, no mask; the pass's padded length picks the attention
        if (starts != null && model.fusedAttention(p + r)) {
            return model.causalPass(tokens, positions);
        }
        return model.pass(tokens, positions, model.attentionMask(valid, 0, p + r), null, 0);
    }

    /**
     * Where the real response tokens are: {@code take[k]}, the flat position (row · (P + R) + column) of
     * the hidden state that predicts the k-th one (row by row, then by position); {@code ids[k]}, that
     * token; {@code spread[i·R + j]}, the k of row i's token j, or T (a padding slot) past its end.
     */
    record ResponseTokens(long[] take, long[] ids, long[] spread) {
        int count() {
            return take.length;
        }
    }

    ResponseTokens responseTokens() {
        int w = p + r, t = 0;
        for (float x : responseMask) {
            t += x > 0 ? 1 : 0;
        }
        if (t == 0) { // no response token (all masked): one stand-in row, spread to nothing, keeps the graph whole
            long[] none = new long[rows * r];
            java.util.Arrays.fill(none, 1);
            return new ResponseTokens(new long[] {0}, new long[] {0}, none);
        }
        long[] take = new long[t], ids = new long[t], spread = new long[rows * r];
        int k = 0;
        for (int i = 0; i < rows; i++) {
            int first = (starts == null ? p : starts[i]) - 1; // the column that predicts response token 0
            for (int j = 0; j < r; j++) {
                if (responseMask[i * r + j] > 0) {
                    take[k] = (long) i * w + first + j;
                    ids[k] = responseIds[i * r + j];
                    spread[i * r + j] = k++;
                } else {
                    spread[i * r + j] = t;
                }
            }
        }
        return new ResponseTokens(take, ids, spread);
    }

    public NDArray tokens(NDManager m) {
        return m.create(tokens, new Shape(rows, p + r));
    }

    NDArray valid(NDManager m) {
        return m.create(valid, new Shape(rows, p + r));
    }

    NDArray responseIds(NDManager m) {
        return m.create(responseIds, new Shape(rows, r));
    }

    /** A [rows, r] float tensor from a per-row-major float array. */
    public NDArray tensor(NDManager m, float[] v) {
        return m.create(v, new Shape(rows, r));
    }
}
