package klrl.train;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;
import klrl.config.TrainConfig;
import klrl.loss.LossConfig;
import klrl.loss.LossTerm;
import klrl.model.Tokenizer;
import klrl.optim.AdamW;
import klrl.optim.LrSchedule;
import klrl.parallel.Replicas;

/**
 * A step's reference pass and policy update over a given batch of sequences, outside a run: what
 * {@code bench --only update-varlen} times on a MATH-like length mix, and what the equality tests of
 * micro-batching compare (batch-wide padding, fixed rows, a token budget).
 */
public final class VarlenUpdate {
    private VarlenUpdate() {}

    /** The update's metrics, the trainable tensors before and after it (when asked for), and the two passes' seconds. */
    record Result(Map<String, Double> loss, double gradNorm, Map<String, float[]> before, Map<String, float[]> weights, double padding,
                  int micro, int skipped, double secondsReference, double secondsUpdate, long fusedCalls, Map<String, Double> busy) {}

    /**
     * Reference pass, then one update in mini-batches of {@code miniRows} rows: per-row advantages and
     * behaviour log-probs a little off the policy's (so clipping and the ratio take part), both seeded.
     */
    static Result run(TrainConfig c, Path model, SequenceBatch all, ReferencePass.Sizes sizes, int miniRows, boolean weights)
            throws Exception {
        try (Tokenizer tok = Tokenizer.load(model); Replicas reps = Replicas.open(c, model, tok, s -> { })) {
            Policies nets = reps.master().nets();
            var o = c.optim();
            try (AdamW opt = new AdamW(nets.trainable, nets.lrScale, new AdamW.Hyper(o.beta1(), o.beta2(), o.eps(), o.weightDecay()),
                    reps.master().root())) {
                LossConfig lc = PolicyUpdate.lossConfig(c, c.kl().coef());
                PolicyUpdate upd = new PolicyUpdate(reps, opt, new LrSchedule(o.lr(), 0, "constant", 1, 100),
                        LossTerm.forConfig(lc, nets.ppo()), 1, sizes, c.train().checkpointLayers(), reps.placement().stages() > 1,
                        o.gradClip(), 10, false);
                long fused0 = klrl.model.Decoder.fusedAttentionCalls();
                long t0 = System.nanoTime();
                ReferencePass.Out ref = ReferencePass.run(reps, all, sizes, 1f, false);
                double secRef = (System.nanoTime() - t0) / 1e9;
                Map<String, Double> busy = new LinkedHashMap<>(reps.takeTimes());
                float[] old = ReferencePass.policyLogp(reps, all, sizes, 1f);
                reps.takeTimes(); // the recomputed log-probs' pass is not timed here
                float[] adv = new float[all.rows() * all.r()];
                SplittableRandom rnd = new SplittableRandom(9);
                for (int i = 0; i < all.rows(); i++) {
                    float a = (float) rnd.nextGaussian();
                    for (int t = 0; t < all.r(); t++) {
                        adv[i * all.r() + t] = a * all.responseMask()[i * all.r() + t];
                    }
                }
                for (int k = 0; k < old.length; k++) {
                    old[k] += (float) (0.3 * rnd.nextGaussian()) * all.responseMask()[k];
                }
                Map<String, float[]> before = weights ? floats(nets) : Map.of();
                long t1 = System.nanoTime();
                PolicyUpdate.Out out = upd.run(new PolicyUpdate.Inputs(all, old, ref.refLogp(), adv, adv, ref.oldValues(),
                        miniRows, 1f, 0, null), lc);
                double secUpd = (System.nanoTime() - t1) / 1e9;
                busy.putAll(reps.takeTimes());
                return new Result(out.lossMetrics(), out.gradNorm(), before, weights ? floats(nets) : Map.of(), out.paddingFraction(),
                        out.microBatches(), out.skipped(), secRef, secUpd, klrl.model.Decoder.fusedAttentionCalls() - fused0, busy);
            }
        }
    }

    private static Map<String, float[]> floats(Policies nets) {
        Map<String, float[]> w = new LinkedHashMap<>();
        for (var e : nets.trainable.entrySet()) {
            w.put(e.getKey(), e.getValue().toType(ai.djl.ndarray.types.DataType.FLOAT32, false).toFloatArray());
        }
        return w;
    }

    /**
     * One reference pass and update of {@code all} in micro-batches of {@code microRows} rows, a token
     * budget ({@code budget} &gt; 0) or padded to the whole batch ({@code batchWide}): what
     * {@code bench --only update-varlen} times.
     */
    public static Timing timed(TrainConfig c, Path model, SequenceBatch all, int microRows, long budget, boolean batchWide, int miniRows)
            throws Exception {
        Result r = run(c, model, all, new ReferencePass.Sizes(microRows, budget, batchWide), miniRows, false);
        return new Timing(r.secondsReference(), r.secondsUpdate(), r.padding(), r.micro(), r.busy());
    }

    /** What {@link #timed} measured; {@code busy}: a pipeline's pipeline_busy (update) and pipeline_busy_reference. */
    public record Timing(double secondsReference, double secondsUpdate, double padding, int micro, Map<String, Double> busy) {}

}
