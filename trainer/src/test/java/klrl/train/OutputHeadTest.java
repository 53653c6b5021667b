package klrl.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import klrl.model.Decoder;
import klrl.run.TinyDefault;
import klrl.util.Grad;
import org.junit.jupiter.api.Test;

/**
 * The chunked output head against the whole one on the built-in model: the same per-token values and
 * the same gradients in every parameter, whatever the chunk (one token, a few, not dividing T), with
 * entropy, the exact KL against a reference and a value head reading the same hidden states.
 */
class OutputHeadTest {

    /** Rows of random prompts and responses of unequal lengths (ids below the vocabulary). */
    private static SequenceBatch batch(int vocab) {
        SplittableRandom rng = new SplittableRandom(7);
        List<long[]> ps = new ArrayList<>(), rs = new ArrayList<>();
        int[] pl = {5, 9, 3}, rl = {11, 4, 17};
        for (int i = 0; i < pl.length; i++) {
            ps.add(rng.longs(pl[i], 1, vocab).toArray());
            rs.add(rng.longs(rl[i], 1, vocab).toArray());
        }
        return SequenceBatch.of(ps, rs, 0);
    }

    /**
     * Per-token values and every parameter's gradient of Σ mask·(logp − 0.3·H + 0.7·KL) + Σ states·w
     * at head chunk {@code c} (with {@code logpOnly}: Σ mask·logp + Σ states·w, the entropy and KL
     * computed but left out of the loss).
     */
    private static Map<String, float[]> run(Decoder model, Decoder ref, SequenceBatch b, int c, NDManager root, float temperature, boolean logpOnly) {
        model.headChunk(c);
        Map<String, float[]> out = new LinkedHashMap<>();
        try (NDManager m = root.newSubManager(); Grad g = Grad.record()) {
            PolicyForward.Ref r = PolicyForward.reference(ref, b, m);
            PolicyForward.Out o = PolicyForward.run(model, b, m, temperature, r, true);
            NDArray mask = b.mask(m);
            NDArray states = o.hidden();                                                      // [N,R,E]
            NDArray w = m.randomNormal(new ai.djl.ndarray.types.Shape(states.getShape().get(2))); // a stand-in value head
            NDArray perToken = logpOnly ? o.logp() : o.logp().sub(o.entropy().mul(0.3f)).add(o.fullKl().mul(0.7f));
            NDArray loss = perToken.mul(mask).sum().add(states.mul(w).sum().mul(0.01f));
            out.put("logp", o.logp().toFloatArray());
            out.put("entropy", o.entropy().toFloatArray());
            out.put("kl", o.fullKl().toFloatArray());
            g.backward(loss);
        }
        model.parameters().forEach((k, p) -> {
            NDArray grad = p.getGradient();
            out.put(k, grad.toType(DataType.FLOAT32, false).toFloatArray());
            grad.subi(grad);
        });
        return out;
    }

    @Test
    void chunkedHeadEqualsTheWholeHeadInValuesAndGradients() throws Exception {
        var dir = TinyDefault.ensure(s -> { });
        klrl.util.Runtime.noGradOutsideCollectors();
        try (NDManager root = NDManager.newBaseManager("PyTorch");
             Decoder model = Decoder.load(dir, root, DataType.FLOAT32);
             Decoder ref = Decoder.load(dir, root, DataType.FLOAT32)) {
            ref.parameters().get("model.norm.weight").muli(1.5f); // another distribution: a KL with a gradient
            model.parameters().values().forEach(p -> p.setRequiresGradient(true));
            root.getEngine().setRandomSeed(3);
            SequenceBatch b = batch(model.config.vocabSize());
            for (boolean logpOnly : new boolean[] {false, true}) {
                float temperature = logpOnly ? 1f : 0.8f;
                root.getEngine().setRandomSeed(11);
                Map<String, float[]> whole = run(model, ref, b, 0, root, temperature, logpOnly);
                for (int c : new int[] {1, 5, 13}) {
                    root.getEngine().setRandomSeed(11);
                    Map<String, float[]> chunked = run(model, ref, b, c, root, temperature, logpOnly);
                    assertEquals(whole.keySet(), chunked.keySet());
                    for (String k : whole.keySet()) {
                        // the same sums grouped by chunk, the gradients applied analytically: log-probs and entropy ~1e-7
                        // apart, the KL (a difference of close logs) and gradients up to ~1.6e-6 on AVX2
                        double rel = relative(chunked.get(k), whole.get(k)), bound = k.equals("logp") || k.equals("entropy") ? 1e-6 : 1e-5;
                        assertTrue(rel <= bound, "chunk " + c + (logpOnly ? ", log-probs only" : "") + ": " + k + " differs by " + rel + " relative");
                    }
                }
                assertTrue(norm(whole.get("kl")) > 1e-3, "the KL must be non-zero for its gradient to be checked");
                assertTrue(norm(whole.get("model.norm.weight")) > 0, "the loss must reach the final norm");
            }
        }
    }

    @Test
    void chunkedHeadRefusesDjlsOwnCollector() throws Exception {
        var dir = TinyDefault.ensure(s -> { });
        klrl.util.Runtime.noGradOutsideCollectors();
        try (NDManager root = NDManager.newBaseManager("PyTorch");
             Decoder model = Decoder.load(dir, root, DataType.FLOAT32).headChunk(4)) {
            model.parameters().values().forEach(p -> p.setRequiresGradient(true));
            SequenceBatch b = batch(model.config.vocabSize());
            try (NDManager m = root.newSubManager();
                 ai.djl.training.GradientCollector gc = ai.djl.engine.Engine.getEngine("PyTorch").newGradientCollector()) {
                // a recording the head cannot hang its backward on: refused, never a gradient that silently stops at the head
                assertThrows(IllegalStateException.class, () -> PolicyForward.run(model, b, m, 1f));
            }
            try (NDManager m = root.newSubManager()) { // outside any recording: values only, chunked
                assertNotNull(PolicyForward.run(model, b, m, 1f).logp());
            }
            model.parameters().values().forEach(p -> p.setRequiresGradient(false));
        }
    }

    static double relative(float[] a, float[] b) {
        double d = 0, n = 0;
        for (int i = 0; i < a.length; i++) {
            d += (double) (a[i] - b[i]) * (a[i] - b[i]);
            n += (double) b[i] * b[i];
        }
        return n == 0 ? Math.sqrt(d) : Math.sqrt(d / n);
    }

    private static double norm(float[] a) {
        double n = 0;
        for (float x : a) {
            n += (double) x * x;
        }
        return Math.sqrt(n);
    }
}
