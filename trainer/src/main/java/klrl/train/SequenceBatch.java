package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.util.List;
import klrl.model.Decoder;

/**
 * Prompt + response sequences laid out for a training forward pass: prompts left-padded to P,
 * responses right-padded to R, so response token j of every row sits at column P + j and is
 * predicted from column P − 1 + j.
 */
public record SequenceBatch(long[] tokens, long[] valid, float[] responseMask, long[] responseIds, int rows, int p, int r) {

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

    /** The given rows as a new batch padded to their own longest prompt and response (P' ≤ P, R' ≤ R). */
    public SequenceBatch rows(int[] idx) {
        int p2 = 1, r2 = 1;
        for (int i : idx) {
            p2 = Math.max(p2, promptLength(i));
            r2 = Math.max(r2, responseLength(i));
        }
        int w = p + r, w2 = p2 + r2, n = idx.length;
        long[] t = new long[n * w2], v = new long[n * w2], ids = new long[n * r2];
        float[] mask = new float[n * r2];
        for (int k = 0; k < n; k++) {
            int i = idx[k];
            // prompts stay left-padded: the last P' columns of the prompt block, then the first R' of the response block
            System.arraycopy(tokens, i * w + (p - p2), t, k * w2, w2);
            System.arraycopy(valid, i * w + (p - p2), v, k * w2, w2);
            System.arraycopy(responseIds, i * r, ids, k * r2, r2);
            System.arraycopy(responseMask, i * r, mask, k * r2, r2);
        }
        return new SequenceBatch(t, v, mask, ids, n, p2, r2);
    }

    /** Rows [from, to) as a new batch with the same P and R. */
    public SequenceBatch slice(int from, int to) {
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
    Decoder.Pass pass(Decoder model, NDArray tokens, NDManager m) {
        NDArray valid = valid(m);
        return model.pass(tokens, valid.cumSum(1).sub(1).maximum(0), model.attentionMask(valid, 0, p + r), null, 0);
    }

    NDArray tokens(NDManager m) {
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
