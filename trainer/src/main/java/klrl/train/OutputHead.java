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
import klrl.util.Nd;

/**
 * The output head over T response tokens, {@code model.head_chunk_tokens} (C) at a time: per token the
 * taken token's log-prob, the entropy and the exact KL against a reference, each chunk's softmax in
 * fp32. A [T, vocabulary] tensor never exists, only [C, vocabulary] ones, one chunk at a time.
 *
 * <p>When T ≤ C (or C = 0) the head is one piece whose graph autograd keeps. Above,
 * the forward keeps no graph and frees each [C,V] tensor once used: its values become leaves the loss
 * reads, and the backward is staged (as {@link klrl.parallel.StagedBackward} stages layers): once the
 * loss's backward has left gradients on those leaves, each chunk's logits are recomputed from its
 * hidden states with a graph, their gradient is built in place from the softmax's closed forms (as
 * verl's fused kernels and Liger's fused linear losses do) and back-propagated through lm_head alone,
 * accumulating into its weight (a tied embedding's matrix adds both of its uses) and into the chunk's
 * hidden states; the gradient of all T hidden states then continues into the decoder. That second
 * backward runs from the recording's {@link Grad#backward} ({@link Grad#after}), so every caller that
 * differentiates a loss gets it.
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
            Result v = JniUtils.isGradMode() ? values(hT, ids, refT, entropy, ref != null) : valuesFreeing(hT, ids, refT, entropy, ref != null);
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
                    Result v = valuesFreeing(piece(hD, from, to, cm), piece(ids, from, to, cm), piece(refT, from, to, cm),
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
        Grad.after(() -> backward(hT, ids, refT, all, leaves, c, m));
        return leaves;
    }

    /**
     * 3. The staged backward: per chunk, its logits recomputed from a leaf of its hidden states with a
     * graph, and back-propagated with the gradient the loss's gradients on the values' leaves give them
     * analytically (below); then the hidden states' gradient (with a value head's, read from the same
     * states) into the decoder.
     */
    private void backward(NDArray hT, NDArray ids, NDArray refT, Result all, Result leaves, int c, NDManager m) {
        NDArray gl = grad(leaves.logp), ge = grad(leaves.entropy), gk = grad(leaves.kl), gs = grad(leaves.states);
        NDArray g;
        if (gl == null && ge == null && gk == null) { // the loss read no value of the head: only the states, if anything
            if (gs == null) {
                return;
            }
            g = gs.toType(hT.getDataType(), false);
        } else {
            int t = (int) hT.getShape().get(0);
            NDArray hD = hT.stopGradient();
            List<NDArray> gh = new ArrayList<>();
            for (int from = 0; from < t; from += c) {
                int to = Math.min(t, from + c);
                try (NDManager cm = m.newSubManager(hT.getDevice())) {
                    NDArray hc = leaf(piece(hD, from, to, cm));
                    NDArray z = model.logits(hc); // [C,V] fp32, with a graph into lm_head and hc
                    NDArray dz;
                    try (Grad paused = Grad.paused()) {
                        dz = logitGrad(z.stopGradient(), piece(ids, from, to, cm), piece(refT, from, to, cm),
                                piece(gl, from, to, cm), piece(ge, from, to, cm), piece(gk, from, to, cm),
                                piece(all.entropy, from, to, cm), piece(all.kl, from, to, cm));
                    }
                    JniUtils.backward((PtNDArray) z, (PtNDArray) dz, false, false);
                    NDArray gc = hc.getGradient();
                    gc.attach(m);
                    gh.add(gc);
                }
            }
            g = NDArrays.concat(new ai.djl.ndarray.NDList(gh), 0);
            gh.forEach(NDArray::close);
            if (gs != null) {
                g = g.add(gs.toType(g.getDataType(), false));
            }
        }
        JniUtils.backward((PtNDArray) hT, (PtNDArray) g, false, false); // (DJL's requiresGrad reads false on an op's result)
    }

    /**
     * The gradient of Σ_t gl_t·log p(y_t) + ge_t·H_t + gk_t·KL_t with respect to one chunk's logits z
     * [C,V], with p = softmax(z/τ), r the reference's distribution, H and KL the forward's values:
     * d log p(y)/dz = (onehot(y) − p)/τ, dH/dz = −p(log p + H)/τ, dKL/dz = p(log p − log r − KL)/τ, so
     * dz = (p ⊙ [(gk − ge)·log p − gk·log r − gl − ge·H − gk·KL] + gl·onehot(y)) / τ.
     * Built in place on the log-softmax: at most four [C,V] tensors beside z with a KL (the reference's
     * logits and log-softmax among them), two without.
     */
    private NDArray logitGrad(NDArray z, NDArray ids, NDArray refH, NDArray gl, NDArray ge, NDArray gk, NDArray h, NDArray kl) {
        NDArray lsm = logSoftmax(z, false);                                                       // [C,V]
        NDArray p = lsm.exp();                                                                    // [C,V]
        NDArray zero = Nd.scalar(lsm, 0);
        NDArray row = gl == null ? zero : gl.neg();                                               // [C,1]: −gl − ge·H − gk·KL
        if (ge != null) {
            row = row.sub(ge.mul(h));
        }
        if (gk != null) {
            row = row.sub(gk.mul(kl));
        }
        lsm.muli(gk == null ? (ge == null ? zero : ge.neg()) : ge == null ? gk : gk.sub(ge)); // (gk − ge)·log p
        if (gk != null) {
            NDArray r = logSoftmax(ref.logitsNoGraph(refH), true);                                      // [C,V] log r
            lsm.subi(r.muli(gk));
            r.close();
        }
        lsm.addi(row).muli(p);
        p.close();
        if (gl != null) { // + gl at each row's token, in place
            NDArray rows = lsm.getManager().arange(0, (int) lsm.getShape().get(0), 1, DataType.INT64), cols = ids.squeeze(1);
            lsm.set(new ai.djl.ndarray.index.NDIndex("{}, {}", rows, cols), lsm.gather(ids, 1).add(gl).squeeze(1));
        }
        if (temperature != 1f) {
            lsm.divi(Nd.scalar(lsm, temperature));
        }
        return lsm;
    }

    /** The values of tokens {@code ids} [C,1] predicted by hidden states {@code h} [C,E], with a graph when recording: from the log-softmax of the logits over the vocabulary, in fp32. */
    private Result values(NDArray h, NDArray ids, NDArray refH, boolean withEntropy, boolean withKl) {
        NDArray logsm = logSoftmax(model, h);                                                    // [C,V]
        NDArray logp = logsm.gather(ids, 1);                                                      // [C,1]
        // H = −Σ p log p
        NDArray ent = withEntropy ? logsm.exp().mul(logsm).sum(new int[] {1}, true).neg() : null;
        // KL(π‖π_ref) = Σ_v π (log π − log π_ref), the reference's side constant
        NDArray kl = withKl ? logsm.exp().mul(logsm.sub(logSoftmax(ref, refH).stopGradient())).sum(new int[] {1}, true) : null;
        return new Result(logp, ent, kl, h);
    }

    /**
     * The values without a graph, each [C,V] intermediate freed as soon as it is used: at most four at
     * once with a KL (the log-softmax, p, the reference's logits and log-softmax), three with the
     * entropy (the log-softmax, p and their product), one for log-probs alone.
     * The same operations as {@link #values}, so the same numbers.
     */
    private Result valuesFreeing(NDArray h, NDArray ids, NDArray refH, boolean withEntropy, boolean withKl) {
        NDArray logsm = logSoftmax(model.logitsNoGraph(h), true);                                       // [C,V]
        NDArray logp = logsm.gather(ids, 1);                                                      // [C,1]
        NDArray ent = null, kl = null;
        if (withEntropy || withKl) {
            NDArray p = logsm.exp();                                                              // [C,V]
            if (withEntropy) {
                NDArray pl = p.mul(logsm);
                ent = pl.sum(new int[] {1}, true).neg();
                pl.close();
            }
            if (withKl) {
                NDArray d = logSoftmax(ref.logitsNoGraph(refH), true).negi().addi(logsm).muli(p);        // π (log π − log π_ref)
                kl = d.sum(new int[] {1}, true);
                d.close();
            }
            p.close();
        }
        logsm.close();
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

    /** log softmax(logits / T) in fp32 without a graph; {@code free}: the logits (and their scaled copy) are closed once read. */
    private NDArray logSoftmax(NDArray logits, boolean free) {
        NDArray x = temperature != 1f ? Nd.div(logits, temperature) : logits;
        NDArray out = JniUtils.logSoftmax((PtNDArray) x, 1, DataType.FLOAT32);
        if (x != logits) {
            x.close();
        }
        if (free) {
            logits.close();
        }
        return out;
    }

    /** Rows [from, to) of x, owned by {@code cm} (so what is computed from them is too), or null for no x. */
    private static NDArray piece(NDArray x, int from, int to, NDManager cm) {
        if (x == null) {
            return null;
        }
        NDArray p = JniUtils.slice((PtNDArray) x, 0, from, to, 1);
        p.attach(cm);
        return p;
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
