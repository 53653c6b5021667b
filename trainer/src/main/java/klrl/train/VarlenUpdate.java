package klrl.train;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.loss.LossConfig;
import klrl.loss.LossTerm;
import klrl.model.TinyModel;
import klrl.model.Tokenizer;
import klrl.optim.AdamW;
import klrl.optim.LrSchedule;

/**
 * A step's reference pass and policy update over a given batch of sequences, outside a run: what
 * {@code bench --only update-varlen} times on a MATH-like length mix, and what the equality tests of
 * micro-batching compare (batch-wide padding, fixed rows, a token budget).
 */
public final class VarlenUpdate {
    private VarlenUpdate() {}

    /** The update's metrics, the trainable tensors before and after it (when asked for), and the two passes' seconds. */
    record Result(Map<String, Double> loss, double gradNorm, Map<String, float[]> before, Map<String, float[]> weights, double padding,
                  int micro, int skipped, double secondsReference, double secondsUpdate, long fusedCalls) {}

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
                float[] old = ReferencePass.policyLogp(reps, all, sizes, 1f);
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
                        miniRows, 1f, 0), lc);
                double secUpd = (System.nanoTime() - t1) / 1e9;
                return new Result(out.lossMetrics(), out.gradNorm(), before, weights ? floats(nets) : Map.of(), out.paddingFraction(),
                        out.microBatches(), out.skipped(), secRef, secUpd, klrl.model.Decoder.fusedAttentionCalls() - fused0);
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
     * {@code bench --only update-varlen}: a 512-hidden, 8-layer model with a 32k vocabulary (seeded random
     * weights), 64 rows with a MATH-like mix — prompts of 40–300 tokens, responses log-normal around a
     * median of 250, cut at 1,024 — timed for (a) micro-batches padded to the whole batch, (b) fixed rows
     * each padded to its own longest, (c) a token budget, (d) the same real tokens as equal-length rows.
     */
    public static void bench(ObjectNode o, int rows, int microRows, long budget) throws Exception {
        TinyModel.Spec spec = new TinyModel.Spec("qwen2", 512, 8, 8, 2, 1408, 3, "F32", Long.MAX_VALUE, false, 0.02, 32000);
        Path dir = Files.createTempDirectory("klrl-varlen");
        try {
            TinyModel.write(dir, spec);
            SplittableRandom rnd = new SplittableRandom(17);
            List<long[]> prompts = new ArrayList<>(), responses = new ArrayList<>();
            long promptTokens = 0, responseTokens = 0;
            for (int i = 0; i < rows; i++) {
                int p = 40 + rnd.nextInt(261);
                int r = (int) Math.min(1024, Math.max(1, Math.round(250 * Math.exp(0.9 * rnd.nextGaussian()))));
                prompts.add(ids(rnd, p));
                responses.add(ids(rnd, r));
                promptTokens += p;
                responseTokens += r;
            }
            SequenceBatch mixed = SequenceBatch.of(prompts, responses, 0);
            List<long[]> ep = new ArrayList<>(), er = new ArrayList<>();
            for (int i = 0; i < rows; i++) { // equal lengths, the same total real tokens (up to rounding)
                ep.add(ids(rnd, (int) (promptTokens / rows)));
                er.add(ids(rnd, (int) (responseTokens / rows)));
            }
            SequenceBatch equal = SequenceBatch.of(ep, er, 0);
            int perRow = (int) ((promptTokens + responseTokens) / rows);
            TrainConfig c = ConfigLoader.load(null, Map.of("model.path", dir.toString(), "output_dir", dir.resolve("out").toString(),
                    "train.batch_size", 8, "train.mini_batch_size", 8, "rollout.n", rows / 8, "data.max_prompt_tokens", 300,
                    "rollout.max_new_tokens", 1024, "train.micro_batch_size", microRows));
            // warm-up: kernels, allocator, JIT
            run(c, dir, equal.slice(0, Math.min(rows, 8)), new ReferencePass.Sizes(microRows, 0, false), Math.min(rows, 8), false);
            Map<String, ReferencePass.Sizes> variants = new LinkedHashMap<>();
            variants.put("a_batch_wide_padding", new ReferencePass.Sizes(microRows, 0, true));
            variants.put("b_rows_own_longest", new ReferencePass.Sizes(microRows, 0, false));
            variants.put("c_token_budget", new ReferencePass.Sizes(microRows, budget, false));
            variants.put("d_ideal_equal_lengths", new ReferencePass.Sizes(Math.max(1, (int) (budget / perRow)), 0, false));
            for (var v : variants.entrySet()) {
                Result r = run(c, dir, v.getKey().startsWith("d_") ? equal : mixed, v.getValue(), rows, false);
                System.err.printf(java.util.Locale.ROOT, "update-varlen %s: %.1f s%n", v.getKey(), r.secondsReference() + r.secondsUpdate());
                ObjectNode n = o.putObject(v.getKey());
                n.put("seconds_reference_and_update", r.secondsReference() + r.secondsUpdate());
                n.put("seconds_reference", r.secondsReference());
                n.put("seconds_update", r.secondsUpdate());
                n.put("padding_fraction", r.padding());
                n.put("micro_batches", r.micro());
            }
            double c2 = o.get("c_token_budget").get("seconds_reference_and_update").asDouble();
            o.put("speedup_budget_vs_batch_wide", o.get("a_batch_wide_padding").get("seconds_reference_and_update").asDouble() / c2);
            o.put("budget_vs_ideal", c2 / o.get("d_ideal_equal_lengths").get("seconds_reference_and_update").asDouble());
            o.put("setting", String.format(java.util.Locale.ROOT, "qwen2-shaped 512 hidden, 8 layers, vocab 32000 (random weights);"
                    + " %d rows, %d prompt + %d response tokens; GRPO, k1 in the reward, one update of all rows, fp32;"
                    + " %d rows per micro-batch, budget %d tokens", rows, promptTokens, responseTokens, microRows, budget));
        } finally {
            klrl.checkpoint.Checkpoints.deleteTree(dir);
        }
    }

    private static long[] ids(SplittableRandom rnd, int n) {
        long[] a = new long[n];
        for (int i = 0; i < n; i++) {
            a[i] = 5 + rnd.nextInt(31000);
        }
        return a;
    }
}
