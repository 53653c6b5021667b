package klrl.train;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import klrl.reward.RewardPool;
import klrl.rollout.Sample;

/** One step's line of metrics.jsonl, which each stage of the step adds to in the order the line shows. */
public final class StepMetrics {
    private final Map<String, Object> values = new LinkedHashMap<>();

    StepMetrics(long step) {
        values.put("step", step);
    }

    StepMetrics put(String key, Object value) {
        values.put(key, value);
        return this;
    }

    StepMetrics putAll(Map<String, ?> m) {
        values.putAll(m);
        return this;
    }

    /**
     * What the rollout and the verifier produced: reward (mean, std), accuracy, response length (mean,
     * min, max), the fraction of responses cut at max_new_tokens, the fraction of prompt groups whose
     * samples all got the same reward (they give GRPO no signal), verifier timeouts.
     */
    StepMetrics rollout(List<Sample> samples, List<RewardPool.Scored> scores) {
        double[] rewards = scores.stream().mapToDouble(RewardPool.Scored::reward).toArray();
        double mean = mean(rewards);
        put("reward_mean", mean);
        put("accuracy", mean(scores.stream().mapToDouble(s -> s.correct() ? 1 : 0).toArray()));
        put("response_length", mean(samples.stream().mapToDouble(s -> s.responseIds().length).toArray()));
        put("verifier_timeouts", scores.stream().filter(RewardPool.Scored::timedOut).count());
        put("reward_std", Math.sqrt(mean(java.util.Arrays.stream(rewards).map(r -> (r - mean) * (r - mean)).toArray())));
        put("response_length_min", samples.stream().mapToInt(s -> s.responseIds().length).min().orElse(0));
        put("response_length_max", samples.stream().mapToInt(s -> s.responseIds().length).max().orElse(0));
        put("truncated_fraction", mean(samples.stream().mapToDouble(s -> "length".equals(s.finishReason()) ? 1 : 0).toArray()));
        Map<Integer, java.util.DoubleSummaryStatistics> groups = new java.util.TreeMap<>();
        for (int i = 0; i < samples.size(); i++) {
            groups.computeIfAbsent(samples.get(i).promptIndex(), k -> new java.util.DoubleSummaryStatistics()).accept(rewards[i]);
        }
        return put("zero_variance_groups", groups.isEmpty() ? 0.0
                : groups.values().stream().filter(g -> g.getMax() == g.getMin()).count() / (double) groups.size());
    }

    /** The policy update's metrics: losses, entropy, gradient norm, skipped updates, grad_var (when on), the loss scale (fp16). */
    StepMetrics update(PolicyUpdate.Out upd, boolean gradVar, double klCoef, double lossScale) {
        putAll(upd.lossMetrics()).put("entropy", upd.entropy()).put("kl_coef", klCoef).put("grad_norm", upd.gradNorm());
        put("skipped_updates", upd.skipped()).put("padding_fraction", upd.paddingFraction()).put("micro_batches", upd.microBatches());
        if (gradVar) {
            put("grad_var", upd.gradVar());
        }
        return lossScale != 1 ? put("loss_scale", lossScale) : this;
    }

    /** The process's resident memory (rss_mb), where it can be read. */
    StepMetrics memory() {
        long rss = residentMb();
        return rss >= 0 ? put("rss_mb", rss) : this;
    }

    /** This process's resident memory in MiB (Linux /proc), or −1 where that is not readable. */
    public static long residentMb() {
        try {
            for (String l : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/self/status"))) {
                if (l.startsWith("VmRSS:")) {
                    return Long.parseLong(l.replaceAll("[^0-9]", "")) / 1024;
                }
            }
        } catch (java.io.IOException | RuntimeException e) {
            // not Linux: the metric is left out
        }
        return -1;
    }

    double get(String key) {
        return ((Number) values.get(key)).doubleValue();
    }

    Map<String, Object> asMap() {
        return values;
    }

    static double mean(double[] v) {
        double s = 0;
        for (double x : v) {
            s += x;
        }
        return v.length == 0 ? 0 : s / v.length;
    }
}
