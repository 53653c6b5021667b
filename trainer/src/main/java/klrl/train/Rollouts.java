package klrl.train;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Consumer;
import klrl.config.TrainConfig;
import klrl.data.Example;
import klrl.data.Prompts;
import klrl.model.Tokenizer;
import klrl.rollout.Sample;
import klrl.rollout.SamplingParams;
import klrl.rollout.remote.RemoteRollout;
import klrl.util.Progress;

/**
 * The rollout stage: n samples per prompt from the current policy, on this process's replicas or on
 * SGLang/vLLM servers (which are first given the step's weights), with the behaviour log-probs the
 * update needs — the sampler's own, or recomputed by the trainer's policy (always with servers).
 */
final class Rollouts implements AutoCloseable {
    private final TrainConfig cfg;
    private final Replicas replicas;
    private final Prompts prompts;
    private final PromptSchedule schedule;
    private final Tokenizer tok;
    private final Path modelDir;
    /** Rollouts on SGLang/vLLM servers (rollout.engine), or null when this process generates. */
    private final RemoteRollout remote;

    Rollouts(TrainConfig cfg, Replicas replicas, Prompts prompts, PromptSchedule schedule, Tokenizer tok, Path modelDir,
             Consumer<String> log) {
        this.cfg = cfg;
        this.replicas = replicas;
        this.prompts = prompts;
        this.schedule = schedule;
        this.tok = tok;
        this.modelDir = modelDir;
        this.remote = cfg.rollout().remote() ? RemoteRollout.connect(cfg.rollout(), tok.eosIds(), log) : null;
    }

    /** The samples of step s (its prompts {@code exs}), with their behaviour log-probs; the servers' metrics into {@code m}. */
    List<Sample> run(List<Example> exs, long step, StepMetrics m) {
        List<Sample> samples = generate(exs, step);
        if (remote != null || cfg.rollout().recomputeLogprobs()) {
            samples = recomputeLogprobs(samples, m);
        }
        if (remote != null) {
            var pool = remote.pool();
            m.put("rollout_retries", pool.takeRetries()).put("rollout_servers_usable", pool.usable());
            m.put("weight_version", remote.current().version()).put("time_weight_sync", remote.takeSyncSeconds());
        }
        return samples;
    }

    /** n samples for each prompt of step s, decoded in as many sequences at once as the KV-cache budget allows. */
    List<Sample> generate(List<Example> exs, long step) {
        var rc = cfg.rollout();
        List<long[]> ids = exs.stream().map(prompts::ids).toList();
        SamplingParams sp = new SamplingParams(rc.maxNewTokens(), rc.temperature(), rc.topP(), rc.topK(), rc.n(), rc.stop(),
                schedule.seed(step, PromptSchedule.ROLLOUT));
        try (Progress p = Progress.start("rollout", (long) exs.size() * rc.n(), "seq")) {
            if (remote == null) {
                return replicas.generate(ids, sp, p::step);
            }
            // the servers serve the weights of this step (version = steps done) before they sample
            Policies nets = replicas.master().nets();
            remote.publish(step, nets.lora(), dir -> klrl.checkpoint.Checkpoints.writeModel(dir, nets.policyWeights(), nets.lora(),
                    nets.adapterConfig(cfg, modelDir), modelDir));
            return remote.generate(ids, sp, p::step);
        }
    }

    /**
     * The samples with the behaviour log-probs recomputed by this trainer's policy (the weights they
     * were sampled with), as verl does; how far the sampler's own are from them goes to the metrics —
     * the signal that sampler and trainer disagree (dtype, kernels, stale weights).
     */
    private List<Sample> recomputeLogprobs(List<Sample> samples, StepMetrics m) {
        SequenceBatch all = SequenceBatch.of(samples, (int) tok.padId());
        float[] mine = ReferencePass.policyLogp(replicas, all, ReferencePass.Sizes.of(cfg), (float) cfg.rollout().temperature());
        double sum = 0, max = 0;
        long tokens = 0;
        List<Sample> out = new ArrayList<>(samples.size());
        for (int i = 0; i < samples.size(); i++) {
            Sample s = samples.get(i);
            float[] lp = Arrays.copyOfRange(mine, i * all.r(), i * all.r() + s.responseIds().length);
            for (int t = 0; t < lp.length; t++) {
                double d = Math.abs(lp[t] - s.logprobs()[t]);
                sum += d;
                max = Math.max(max, d);
            }
            tokens += lp.length;
            out.add(new Sample(s.promptIndex(), s.promptIds(), s.responseIds(), lp, s.finishReason()));
        }
        m.put("rollout_logprob_diff_mean", sum / Math.max(1, tokens)).put("rollout_logprob_diff_max", max);
        return out;
    }

    @Override
    public void close() {
        if (remote != null) {
            remote.close();
        }
    }
}
