package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import klrl.model.Decoder;

/**
 * One training-time forward over a {@link SequenceBatch}: per-token log-probs of the response under
 * softmax(logits / T) (the rollout's convention), the per-token entropy, optionally the full
 * log-softmax (for the "full" KL estimator) and the hidden states (for a value head).
 */
public final class PolicyForward {
    private PolicyForward() {}

    /**
     * @param logp    [N,R] log π(y_t), differentiable when a collector is open
     * @param entropy [N,R] entropy of softmax(logits/T)
     * @param logSoftmax [N,R,V] when requested, else null
     * @param states  the [N,R,E] hidden states that predict each response token, made when asked for
     *                (only a value head reads them)
     */
    public record Out(NDArray logp, NDArray entropy, NDArray logSoftmax, java.util.function.Supplier<NDArray> states) {
        /** [N,R,E] hidden states that predict each response token, zeros on padding. */
        public NDArray hidden() {
            return states.get();
        }
    }

    public static Out run(Decoder model, SequenceBatch b, NDManager m, float temperature, boolean keepLogSoftmax) {
        return run(model, b, m, temperature, keepLogSoftmax, true);
    }

    /** As above; without {@code withEntropy} the entropy is null (reference passes need none). */
    public static Out run(Decoder model, SequenceBatch b, NDManager m, float temperature, boolean keepLogSoftmax,
                          boolean withEntropy) {
        NDArray tokens = b.tokens(m);
        NDArray h = model.hidden(tokens, b.pass(model, tokens, m));
        return head(model, b, m, h, temperature, keepLogSoftmax, withEntropy);
    }

    /**
     * The part after the decoder stack, over the real response tokens only (a row's padding costs no
     * logits): their hidden states, logits, log-probs and entropy as [T] rows, then spread to the
     * batch's [N,R] layout with zeros on padding.
     */
    public static Out head(Decoder model, SequenceBatch b, NDManager m, NDArray h, float temperature, boolean keepLogSoftmax,
                           boolean withEntropy) {
        SequenceBatch.ResponseTokens rt = b.responseTokens();
        long e = h.getShape().get(2);
        // the state at column c predicts the token at c + 1: gather the T that predict response tokens
        NDArray hT = rows(h.reshape(-1, e), rt.take(), m);                                        // [T,E]
        NDArray logits = model.logits(hT);                                                        // [T,V]
        if (temperature != 1f) {
            logits = klrl.util.Nd.div(logits, temperature);
        }
        NDArray logsm = JniUtils.logSoftmax((PtNDArray) logits, 1, DataType.FLOAT32);
        NDArray ids = m.create(rt.ids()).toDevice(logsm.getDevice(), false).expandDims(1);
        NDArray logp = logsm.gather(ids, 1);                                                      // [T,1]
        // H = −Σ p log p
        NDArray entropy = withEntropy ? logsm.exp().mul(logsm).sum(new int[] {1}, true).neg() : null;
        long n = b.rows(), r = b.r();
        return new Out(spread(logp, rt, m).reshape(n, r), entropy == null ? null : spread(entropy, rt, m).reshape(n, r),
                keepLogSoftmax ? spread(logsm, rt, m).reshape(n, r, -1) : null, () -> spread(hT, rt, m).reshape(n, r, e));
    }

    /** Rows {@code at} of a [M,K] tensor, as an embedding lookup (differentiable in the tensor). */
    private static NDArray rows(NDArray x, long[] at, NDManager m) {
        NDArray idx = m.create(at).toDevice(x.getDevice(), false);
        return JniUtils.embedding((PtNDArray) idx, (PtNDArray) x, false);
    }

    /** [T,K] per-token rows → [N·R,K] in the batch's layout, zeros on padding (row T of the padded lookup). */
    private static NDArray spread(NDArray x, SequenceBatch.ResponseTokens rt, NDManager m) {
        NDArray zero = m.zeros(new ai.djl.ndarray.types.Shape(1, x.getShape().get(1)), x.getDataType(), x.getDevice());
        return rows(x.concat(zero, 0), rt.spread(), m);
    }

    /** Exact per-token KL(π‖π_ref) = Σ_v π (log π − log π_ref) from two log-softmaxes [N,R,V]. */
    public static NDArray fullKl(NDArray logsm, NDArray refLogsm) {
        return logsm.exp().mul(logsm.sub(refLogsm)).sum(new int[] {2});
    }
}
