package klrl.train;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import klrl.reward.RewardPool;
import klrl.rollout.Sample;

/** One step's line of metrics.jsonl, which each stage of the step adds to in the order the line shows. */
final class StepMetrics {
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

    /** What the rollout and the verifier produced: reward, accuracy, length, verifier timeouts. */
    StepMetrics rollout(List<Sample> samples, List<RewardPool.Scored> scores) {
        put("reward_mean", mean(scores.stream().mapToDouble(RewardPool.Scored::reward).toArray()));
        put("accuracy", mean(scores.stream().mapToDouble(s -> s.correct() ? 1 : 0).toArray()));
        put("response_length", mean(samples.stream().mapToDouble(s -> s.responseIds().length).toArray()));
        return put("verifier_timeouts", scores.stream().filter(RewardPool.Scored::timedOut).count());
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
