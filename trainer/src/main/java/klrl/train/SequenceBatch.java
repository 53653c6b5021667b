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
