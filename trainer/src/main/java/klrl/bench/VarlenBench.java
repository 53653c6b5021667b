package klrl.bench;

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
import klrl.model.TinyModel;
import klrl.train.SequenceBatch;
import klrl.train.VarlenUpdate;

/** The update-varlen benchmark: one reference pass and update of a MATH-like length mix, micro-batched four ways. */
final class VarlenBench {
    private VarlenBench() {}

    /**
     * {@code bench --only update-varlen}: a 512-hidden, 8-layer model with a 32k vocabulary (seeded random
     * weights), 64 rows with a MATH-like mix — prompts of 40–300 tokens, responses log-normal around a
     * median of 250, cut at 1,024 — timed for (a) micro-batches padded to the whole batch, (b) fixed rows
     * each padded to its own longest, (c) a token budget, (d) the same real tokens as equal-length rows.
     */
    static void run(ObjectNode o, int rows, int microRows, long budget) throws Exception {
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
            VarlenUpdate.timed(c, dir, equal.slice(0, Math.min(rows, 8)), microRows, 0, false, Math.min(rows, 8));
            // (micro-batch rows, token budget, padded to the whole batch)
            Map<String, long[]> variants = new LinkedHashMap<>();
            variants.put("a_batch_wide_padding", new long[] {microRows, 0, 1});
            variants.put("b_rows_own_longest", new long[] {microRows, 0, 0});
            variants.put("c_token_budget", new long[] {microRows, budget, 0});
            variants.put("d_ideal_equal_lengths", new long[] {Math.max(1, (int) (budget / perRow)), 0, 0});
            for (var v : variants.entrySet()) {
                long[] s = v.getValue();
                VarlenUpdate.Timing r = VarlenUpdate.timed(c, dir, v.getKey().startsWith("d_") ? equal : mixed, (int) s[0], s[1], s[2] == 1, rows);
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
