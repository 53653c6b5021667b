package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
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
     * @param hidden  [N,R,E] hidden states that predict each response token
     */
    public record Out(NDArray logp, NDArray entropy, NDArray logSoftmax, NDArray hidden) {}

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

    /** The part after the decoder stack: response window, logits, log-probs, entropy. */
    public static Out head(Decoder model, SequenceBatch b, NDManager m, NDArray h, float temperature, boolean keepLogSoftmax,
                           boolean withEntropy) {
        // hidden states at P−1 … P+R−2 predict response tokens 0 … R−1
        NDArray hr = h.get(new NDIndex(":, {}:{}, :", b.p() - 1, b.p() - 1 + b.r()));
        NDArray logits = model.logits(hr);
        if (temperature != 1f) {
            logits = klrl.util.Nd.div(logits, temperature);
        }
        NDArray logsm = JniUtils.logSoftmax((PtNDArray) logits, 2, DataType.FLOAT32);
        NDArray ids = b.responseIds(m).expandDims(2);
        NDArray logp = logsm.gather(ids, 2).squeeze(2);
        // H = −Σ p log p
        NDArray entropy = withEntropy ? logsm.exp().mul(logsm).sum(new int[] {2}).neg() : null;
        return new Out(logp, entropy, keepLogSoftmax ? logsm : null, hr);
    }

    /** Exact per-token KL(π‖π_ref) = Σ_v π (log π − log π_ref) from two log-softmaxes [N,R,V]. */
    public static NDArray fullKl(NDArray logsm, NDArray refLogsm) {
        return logsm.exp().mul(logsm.sub(refLogsm)).sum(new int[] {2});
    }
}
