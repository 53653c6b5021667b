package klrl.check;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import klrl.model.Decoder;
import klrl.train.PolicyForward;
import klrl.train.SequenceBatch;

/**
 * model.attention measured against itself on a model: sdpa's log-probs and gradients against eager's
 * on packed rows, and the time and peak memory of one long row through a reference pass and an
 * update's forward and backward. gpu-check runs it on the user's GPU, bench on the CPU.
 */
public final class AttentionCheck {
    private AttentionCheck() {}

    /** The largest |Δ log-prob| and the largest gradient difference relative to each tensor's largest gradient. */
    public record Agreement(double logprob, double gradient) {}

    /** sdpa against eager on {@code rows} random rows of up to {@code maxLen} tokens, packed into one micro-batch. */
    public static Agreement compare(Decoder model, int rows, int maxLen, long seed, NDManager root) {
        SplittableRandom rnd = new SplittableRandom(seed);
        int vocab = model.config.vocabSize();
        List<long[]> prompts = new ArrayList<>(), responses = new ArrayList<>();
        for (int i = 0; i < rows; i++) {
            int len = 2 + rnd.nextInt(Math.max(1, maxLen - 2));
            int p = 1 + rnd.nextInt(len - 1);
            prompts.add(rnd.longs(p, 3, vocab).toArray());
            responses.add(rnd.longs(len - p, 3, vocab).toArray());
        }
        String was = model.attentionMode();
        for (NDArray p : model.parameters().values()) {
            p.setRequiresGradient(true);
        }
        try {
            Pass eager = pass(model.attention("eager"), prompts, responses, root);
            Pass fused = pass(model.attention("sdpa"), prompts, responses, root);
            double lp = 0;
            for (int i = 0; i < eager.logp.length; i++) {
                lp = Math.max(lp, Math.abs(eager.logp[i] - fused.logp[i]));
            }
            return new Agreement(lp, PipelineCheck.gradientDiff(eager.grads, fused.grads));
        } finally {
            model.attention(was);
            for (NDArray p : model.parameters().values()) {
                p.setRequiresGradient(false);
            }
        }
    }

    private record Pass(float[] logp, Map<String, float[]> grads) {}

    private static Pass pass(Decoder model, List<long[]> prompts, List<long[]> responses, NDManager root) {
        try (NDManager m = root.newSubManager()) {
            SequenceBatch packed = packed(prompts, responses);
            float[] logp;
            try (klrl.util.Grad gc = klrl.util.Grad.record()) {
                NDArray lp = PolicyForward.run(model, packed, m, 1f).logp().mul(packed.mask(m));
                logp = lp.toFloatArray();
                gc.backward(lp.sum());
            }
            Map<String, float[]> grads = new LinkedHashMap<>();
            for (var e : model.parameters().entrySet()) {
                NDArray g = e.getValue().getGradient();
                grads.put(e.getKey(), g.toType(DataType.FLOAT32, false).toFloatArray());
                g.subi(g);
            }
            return new Pass(logp, grads);
        }
    }

    private static SequenceBatch packed(List<long[]> prompts, List<long[]> responses) {
        SequenceBatch all = SequenceBatch.of(prompts, responses, 0);
        int[] idx = new int[all.rows()];
        for (int i = 0; i < idx.length; i++) {
            idx[i] = i;
        }
        return all.rows(idx);
    }

    /** Seconds of one row of {@code tokens} tokens (half prompt, half response) through a no-grad reference forward and a training forward and backward. */
    public static double rowSeconds(Decoder model, int tokens, long seed, NDManager root) {
        SplittableRandom rnd = new SplittableRandom(seed);
        int vocab = model.config.vocabSize();
        List<long[]> prompts = List.of(rnd.longs(tokens / 2, 3, vocab).toArray());
        List<long[]> responses = List.of(rnd.longs(tokens - tokens / 2, 3, vocab).toArray());
        SequenceBatch packed = packed(prompts, responses);
        for (NDArray p : model.parameters().values()) {
            p.setRequiresGradient(true);
        }
        long t0 = System.nanoTime();
        try (NDManager m = root.newSubManager()) {
            PolicyForward.run(model, packed, m, 1f).logp().toFloatArray(); // the reference pass
            try (klrl.util.Grad gc = klrl.util.Grad.record()) {
                gc.backward(PolicyForward.run(model, packed, m, 1f).logp().mul(packed.mask(m)).sum());
            }
        } finally {
            for (NDArray p : model.parameters().values()) {
                p.setRequiresGradient(false);
            }
        }
        return (System.nanoTime() - t0) / 1e9;
    }
}
