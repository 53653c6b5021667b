package klrl.train;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.IntFunction;
import klrl.config.TrainConfig;
import klrl.data.Example;
import klrl.reward.RewardPool;
import klrl.rollout.Sample;

/**
 * DAPO's dynamic sampling (verl's algorithm.filter_groups): a prompt group whose samples all got the
 * same accuracy (or reward) gives GRPO no signal, so it is dropped and more prompts are generated
 * until train.batch_size informative groups are in, in the order they were generated. After
 * max_gen_batches batches the step trains on the informative groups it has, filled up with the
 * uninformative ones of the batches (in order), and one line says so (verl stops the run instead).
 * Metrics: gen_batches, filtered_groups.
 */
final class DynamicSampling {
    private DynamicSampling() {}

    static Rollouts.Batch fill(Rollouts.Batch first, int groups, TrainConfig.FilterGroups fg, IntFunction<Rollouts.Batch> more,
                               Map<String, Object> metrics, long step, Consumer<String> log) {
        List<Example> prompts = new ArrayList<>();
        List<Sample> samples = new ArrayList<>();
        List<RewardPool.Scored> scores = new ArrayList<>();
        List<Rollouts.Batch> dropped = new ArrayList<>();
        int filtered = 0, batches = 0;
        for (Rollouts.Batch b = first; ; b = more.apply(batches)) {
            batches++;
            List<Rollouts.Batch> split = byGroup(b);
            for (Rollouts.Batch g : split) {
                if (prompts.size() < groups && informative(g, fg.metric())) {
                    add(g, prompts, samples, scores);
                } else if (prompts.size() < groups) {
                    filtered++;
                    dropped.add(g);
                }
            }
            if (prompts.size() == groups || batches == fg.maxGenBatches()) {
                break;
            }
        }
        if (prompts.size() < groups) {
            log.accept("step " + (step + 1) + ": " + prompts.size() + " of " + groups + " prompt groups informative after "
                    + batches + " generation batches (algorithm.filter_groups.max_gen_batches); filled up with uninformative ones");
            for (int i = 0; prompts.size() < groups; i++) {
                add(dropped.get(i), prompts, samples, scores);
            }
        }
        metrics.put("gen_batches", batches);
        metrics.put("filtered_groups", filtered);
        return new Rollouts.Batch(prompts, samples, scores);
    }

    /** Whether a group's samples differ in the metric (so GRPO's advantages are not all zero). */
    static boolean informative(Rollouts.Batch g, String metric) {
        return g.scores().stream().mapToDouble(s -> metric.equals("accuracy") ? (s.correct() ? 1 : 0) : s.reward())
                .distinct().count() > 1;
    }

    /** A batch cut into one batch per prompt (its samples' promptIndex 0), in prompt order. */
    private static List<Rollouts.Batch> byGroup(Rollouts.Batch b) {
        List<Rollouts.Batch> out = new ArrayList<>();
        for (Example e : b.prompts()) {
            out.add(new Rollouts.Batch(List.of(e), new ArrayList<>(), new ArrayList<>()));
        }
        for (int i = 0; i < b.samples().size(); i++) { // one pass: each sample to its prompt's group, in order
            Sample x = b.samples().get(i);
            Rollouts.Batch g = out.get(x.promptIndex());
            g.samples().add(x.withPromptIndex(0));
            g.scores().add(b.scores().get(i));
        }
        return out;
    }

    private static void add(Rollouts.Batch g, List<Example> prompts, List<Sample> samples, List<RewardPool.Scored> scores) {
        int index = prompts.size();
        prompts.add(g.prompts().get(0));
        for (Sample x : g.samples()) {
            samples.add(x.withPromptIndex(index));
        }
        scores.addAll(g.scores());
    }
}
