package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import java.util.function.Supplier;
import klrl.model.Decoder;

/**
 * One training-time forward over a {@link SequenceBatch}: per-token log-probs of the response under
 * softmax(logits / T) (the rollout's convention), the per-token entropy, optionally the exact KL
 * against a reference, and the hidden states (for a value head).
 *
 * <p>The output head runs over the real response tokens only, {@code model.head_chunk_tokens} at a
 * time ({@link OutputHead}): no [tokens, vocabulary] tensor of a whole micro-batch exists, in the
 * forward or in the backward.
 */
public final class PolicyForward {
    private PolicyForward() {}

    /**
     * @param logp    [N,R] log π(y_t), differentiable when recording
     * @param entropy [N,R] entropy of softmax(logits/T), or null when not asked for
     * @param fullKl  [N,R] exact KL(π‖π_ref) = Σ_v π (log π − log π_ref) per token when a reference was
     *                given, differentiable in π; else null
     * @param states  the [N,R,E] hidden states that predict each response token, made when asked for
     *                (only a value head reads them)
     */
    public record Out(NDArray logp, NDArray entropy, NDArray fullKl, Supplier<NDArray> states) {
        /** [N,R,E] hidden states that predict each response token, zeros on padding. */
        public NDArray hidden() {
            return states.get();
        }
    }

    /** The reference network and its final hidden states [N,W,E] over the same batch: what the exact KL reads, chunk by chunk. */
    public record Ref(Decoder model, NDArray hidden) {}

    /** Log-probs and entropy of the batch's responses. */
    public static Out run(Decoder model, SequenceBatch b, NDManager m, float temperature) {
        return run(model, b, m, temperature, null, true);
    }

    /** As above, with the exact KL against {@code ref} when given; without {@code withEntropy} the entropy is null. */
    public static Out run(Decoder model, SequenceBatch b, NDManager m, float temperature, Ref ref, boolean withEntropy) {
        return head(model, b, m, hidden(model, b, m), temperature, ref, withEntropy);
    }

    /** The final hidden states [N,W,E] of {@code model} over the batch (recorded when recording). */
    public static NDArray hidden(Decoder model, SequenceBatch b, NDManager m) {
        NDArray tokens = b.tokens(m);
        return model.hidden(tokens, b.pass(model, tokens, m));
    }

    /** The reference's final hidden states over the batch, its adapters off, no graph kept: what {@link #head} needs for the exact KL. */
    public static Ref reference(Decoder reference, SequenceBatch b, NDManager m) {
        try (var off = reference.adaptersOff(); klrl.util.Grad paused = klrl.util.Grad.paused()) {
            return new Ref(reference, hidden(reference, b, m));
        }
    }

    /** [N,R,E] hidden states that predict each response token, zeros on padding, from final hidden states h [N,W,E]: a value head's input. */
    public static NDArray states(SequenceBatch b, NDManager m, NDArray h) {
        SequenceBatch.ResponseTokens rt = b.responseTokens();
        long e = h.getShape().get(2);
        return spread(rows(h.reshape(-1, e), rt.take(), m), rt, m).reshape(b.rows(), b.r(), e);
    }

    /**
     * The part after the decoder stack, over the real response tokens only (a row's padding costs no
     * logits): their hidden states [T,E], then the head's per-token values, then spread to the batch's
     * [N,R] layout with zeros on padding.
     */
    public static Out head(Decoder model, SequenceBatch b, NDManager m, NDArray h, float temperature, Ref ref,
                           boolean withEntropy) {
        SequenceBatch.ResponseTokens rt = b.responseTokens();
        long e = h.getShape().get(2);
        // the state at column c predicts the token at c + 1: gather the T that predict response tokens
        NDArray hT = rows(h.reshape(-1, e), rt.take(), m);                                        // [T,E]
        NDArray refT = ref == null ? null : rows(ref.hidden().reshape(-1, e), rt.take(), m).stopGradient(); // [T,E]
        NDArray ids = m.create(rt.ids()).toDevice(hT.getDevice(), false).expandDims(1);          // [T,1]
        OutputHead.Result v = new OutputHead(model, temperature, withEntropy, ref == null ? null : ref.model())
                .apply(hT, ids, refT, m);
        long n = b.rows(), r = b.r();
        return new Out(spread(v.logp(), rt, m).reshape(n, r), v.entropy() == null ? null : spread(v.entropy(), rt, m).reshape(n, r),
                v.kl() == null ? null : spread(v.kl(), rt, m).reshape(n, r), () -> spread(v.states(), rt, m).reshape(n, r, e));
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
}
