package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import java.util.ArrayList;
import java.util.List;
import klrl.model.Decoder;
import klrl.util.Grad;

/**
 * The output head over T response tokens, {@code model.head_chunk_tokens} (C) at a time: per token the
 * taken token's log-prob, the entropy and the exact KL against a reference, each chunk's softmax in
 * fp32. A [T, vocabulary] tensor never exists, only [C, vocabulary] ones, one chunk at a time.
 *
 * <p>When T ≤ C (or C = 0) the head is one piece whose graph autograd keeps, as before chunking. Above,
 * the forward keeps no graph: its values become leaves the loss reads, and the backward is staged (as
 * {@link klrl.parallel.StagedBackward} stages layers): once the loss's backward has left gradients on
 * those leaves, each chunk's logits are recomputed from its hidden states with a graph and
 * back-propagated, accumulating into lm_head (a tied embedding's matrix adds both of its uses) and
 * into the chunk's hidden states; the gradient of all T hidden states then continues into the
 * decoder. That second backward runs from the recording's {@link Grad#backward}
 * ({@link Grad#after}), so every caller that differentiates a loss gets it.
 */
final class OutputHead {
    private final Decoder model, ref;
    private final float temperature;
    private final boolean entropy;

    /** Per-token values [T,1] in fp32 (entropy and kl null when not asked for), and the hidden states a value head reads [T,E]. */
    record Result(NDArray logp, NDArray entropy, NDArray kl, NDArray states) {}

    /**
     * @param ref the reference network whose logits the exact KL compares against (its final hidden
     *            states come with each call), or null for no KL
     */
    OutputHead(Decoder model, float temperature, boolean entropy, Decoder ref) {
        this.model = model;
        this.temperature = temperature;
        this.entropy = entropy;
        this.ref = ref;
    }

    /**
     * The head over hidden states {@code hT} [T,E] predicting tokens {@code ids} [T,1], with the
     * reference's hidden states {@code refT} [T,E] when a KL is asked for.
     */
    Result apply(NDArray hT, NDArray ids, NDArray refT, NDManager m) {
        int t = (int) hT.getShape().get(0), c = model.headChunkTokens();
        if (c == 0 || t <= c) { // one piece: autograd keeps its graph when recording
            Result v = values(hT, ids, refT, entropy, ref != null);
            return new Result(v.logp, v.entropy, v.kl, hT);
        }
        boolean grad = JniUtils.isGradMode();
        if (grad && !Grad.recording()) {
            throw new IllegalStateException("the chunked output head differentiates only inside a klrl.util.Grad recording");
        }
        // 1. Forward chunk by chunk, no graph: each chunk's [C,V] tensors go with its manager.
        NDArray hD = hT.stopGradient();
        List<NDArray> lp = new ArrayList<>(), en = new ArrayList<>(), kl = new ArrayList<>();
        try (Grad paused = Grad.paused()) {
            for (int from = 0; from < t; from += c) {
                int to = Math.min(t, from + c);
                try (NDManager cm = m.newSubManager(hT.getDevice())) {
                    Result v = values(piece(hD, from, to, cm), piece(ids, from, to, cm), refT == null ? null : piece(refT, from, to, cm),
                            entropy, ref != null);
                    keep(v.logp, lp, m);
                    keep(v.entropy, en, m);
                    keep(v.kl, kl, m);
                }
            }
        }
        Result all = new Result(NDArrays.concat(new ai.djl.ndarray.NDList(lp), 0), join(en), join(kl), hT);
        if (!grad) {
            return all;
        }
        // 2. The loss reads leaves; their gradients drive the recomputing backward below, after the loss's own.
        Result leaves = new Result(leaf(all.logp), leaf(all.entropy), leaf(all.kl), leaf(hT));
        Grad.after(() -> backward(hT, ids, refT, leaves, m));
        return leaves;
    }

    /**
     * 3. The staged backward: per chunk, its logits recomputed from a leaf of its hidden states with a
     * graph, and back-propagated with the gradients the loss left on the values' leaves; then the
     * hidden states' gradient (with a value head's, read from the same states) into the decoder.
     */
    private void backward(NDArray hT, NDArray ids, NDArray refT, Result leaves, NDManager m) {
        NDArray gl = grad(leaves.logp), ge = grad(leaves.entropy), gk = grad(leaves.kl), gs = grad(leaves.states);
        int t = (int) hT.getShape().get(0), c = model.headChunkTokens();
        NDArray hD = hT.stopGradient();
        List<NDArray> gh = new ArrayList<>();
        for (int from = 0; from < t; from += c) {
            int to = Math.min(t, from + c);
            try (NDManager cm = m.newSubManager(hT.getDevice())) {
                NDArray hc = leaf(piece(hD, from, to, cm));
                Result v = values(hc, piece(ids, from, to, cm), refT == null ? null : piece(refT, from, to, cm), ge != null, gk != null);
                // Σ_t g_t · value_t: its backward hands each value its gradient g_t, as autograd would have
                NDArray s = null;
                s = plus(s, v.logp, gl, from, to, cm);
                s = plus(s, v.entropy, ge, from, to, cm);
                s = plus(s, v.kl, gk, from, to, cm);
                if (s != null) {
                    JniUtils.backward((PtNDArray) s, (PtNDArray) s.onesLike(), false, false);
                }
                NDArray g = hc.getGradient(); // zeros when nothing reached it
                g.attach(m);
                gh.add(g);
            }
        }
        NDArray g = NDArrays.concat(new ai.djl.ndarray.NDList(gh), 0);
        if (gs != null) {
            g = g.add(gs.toType(g.getDataType(), false));
        }
        JniUtils.backward((PtNDArray) hT, (PtNDArray) g, false, false); // (DJL's requiresGrad reads false on an op's result)
    }

    /** The values of tokens {@code ids} [C,1] predicted by hidden states {@code h} [C,E]: from the log-softmax of the logits over the vocabulary, in fp32. */
    private Result values(NDArray h, NDArray ids, NDArray refH, boolean withEntropy, boolean withKl) {
        NDArray logsm = logSoftmax(model, h);                                                    // [C,V]
        NDArray logp = logsm.gather(ids, 1);                                                      // [C,1]
        // H = −Σ p log p
        NDArray ent = withEntropy ? logsm.exp().mul(logsm).sum(new int[] {1}, true).neg() : null;
        // KL(π‖π_ref) = Σ_v π (log π − log π_ref), the reference's side constant
        NDArray kl = withKl ? logsm.exp().mul(logsm.sub(logSoftmax(ref, refH).stopGradient())).sum(new int[] {1}, true) : null;
        return new Result(logp, ent, kl, h);
    }

    /** log softmax(lm_head(h) / T) over the vocabulary in fp32, [C,V]. */
    private NDArray logSoftmax(Decoder d, NDArray h) {
        NDArray logits = d.logits(h);
        if (temperature != 1f) {
            logits = klrl.util.Nd.div(logits, temperature);
        }
        return JniUtils.logSoftmax((PtNDArray) logits, 1, DataType.FLOAT32);
    }

    /** Rows [from, to) of x, owned by {@code cm} (so what is computed from them is too). */
    private static NDArray piece(NDArray x, int from, int to, NDManager cm) {
        NDArray p = JniUtils.slice((PtNDArray) x, 0, from, to, 1);
        p.attach(cm);
        return p;
    }

    /** s + Σ g[from, to) · v (v's gradient is then g there), or s unchanged when the loss left no gradient. */
    private static NDArray plus(NDArray s, NDArray v, NDArray g, int from, int to, NDManager cm) {
        if (g == null) {
            return s;
        }
        NDArray term = v.mul(piece(g, from, to, cm)).sum();
        return s == null ? term : s.add(term);
    }

    private static void keep(NDArray v, List<NDArray> to, NDManager m) {
        if (v != null) {
            v.attach(m);
            to.add(v);
        }
    }

    private static NDArray join(List<NDArray> parts) {
        return parts.isEmpty() ? null : NDArrays.concat(new ai.djl.ndarray.NDList(parts), 0);
    }

    /** A detached copy of x that records its own gradient (x's storage shared), or null. */
    private static NDArray leaf(NDArray x) {
        if (x == null) {
            return null;
        }
        NDArray d = x.stopGradient();
        d.setRequiresGradient(true);
        return d;
    }

    /** The gradient a leaf received, or null when the loss did not reach it. */
    private static NDArray grad(NDArray leaf) {
        return leaf == null ? null : JniUtils.getGradient((PtNDArray) leaf);
    }
}
