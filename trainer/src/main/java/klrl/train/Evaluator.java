package klrl.train;

import ai.djl.ndarray.NDManager;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import klrl.config.TrainConfig;
import klrl.data.Example;
import klrl.data.Prompts;
import klrl.metrics.MetricsLog;
import klrl.model.Decoder;
import klrl.model.Tokenizer;
import klrl.plan.MemoryPlan;
import klrl.reward.RewardPool;
import klrl.rollout.RolloutEngine;
import klrl.rollout.Sample;
import klrl.rollout.SamplingParams;

/** Greedy accuracy and mean@k of the policy on held-out sets, with the rollout engine and the verifier. */
public final class Evaluator {
    private static final int BATCH = 64;

    /** Samples for prompts: one rollout engine, or the run's replicas sharing the prompts out. */
    interface Generator {
        List<Sample> generate(List<long[]> prompts, SamplingParams p);
    }

    private final Generator generator;
    private final Prompts prompts;
    private final Tokenizer tok;
    private final RewardPool rewards;
    private final TrainConfig cfg;

    Evaluator(Generator generator, Prompts prompts, Tokenizer tok, RewardPool rewards, TrainConfig cfg) {
        this.generator = generator;
        this.prompts = prompts;
        this.tok = tok;
        this.rewards = rewards;
        this.cfg = cfg;
    }

    /**
     * Evaluates a model folder on its own: the policy, its tokenizer and the verifier; no reference
     * copy, optimizer or training set is loaded.
     */
    public static Map<String, Object> evaluateModel(TrainConfig cfg, java.nio.file.Path modelDir, List<Example> rows, int maxExamples,
                                                    long seed) throws java.io.IOException {
        var dtype = klrl.util.Runtime.dtype(cfg.model().dtype());
        var placement = klrl.model.Placement.balanced(
                klrl.model.Placement.parseDevices(cfg.model().device(), klrl.util.Runtime::device), klrl.model.ModelConfig.load(modelDir));
        try (NDManager root = NDManager.newBaseManager(placement.output(), "PyTorch");
             Tokenizer tok = Tokenizer.load(modelDir);
             RewardPool rewards = rewardPool(cfg)) {
            klrl.util.Runtime.noGradOutsideCollectors();
            Decoder policy = Decoder.load(modelDir, root, dtype, placement).attention(cfg.model().attention());
            Prompts prompts = new Prompts(tok, cfg.data().promptFormat());
            // the first max_examples rows (with data.overlong_prompts: filter, of those whose prompts fit)
            List<Example> exs = (cfg.data().filterOverlong() ? rows.stream().filter(e -> prompts.encode(e).length <= prompts.maxTokens())
                    : rows.stream()).limit(maxExamples).toList();
            if (exs.isEmpty() && !rows.isEmpty() && cfg.data().filterOverlong()) {
                throw new klrl.util.UserError("every prompt is over data.max_prompt_tokens=" + prompts.maxTokens()
                        + ", so data.overlong_prompts: filter leaves none to evaluate; raise data.max_prompt_tokens");
            }
            exs.forEach(prompts::ids); // a bad row fails before any generation
            RolloutEngine engine = rolloutEngine(policy, tok, cfg).withMaxRows(MemoryPlan.kvRows(cfg, policy));
            return new Evaluator((ids, p) -> engine.generate(ids, p, root), prompts, tok, rewards, cfg).evaluate(exs, seed);
        }
    }

    /** The reward the config names (train.reward, its jar, format weight, workers, verifier deadline). */
    static RewardPool rewardPool(TrainConfig cfg) {
        var t = cfg.train();
        return new RewardPool(t.reward(), t.rewardJar(), t.formatRewardWeight(), t.rewardWorkers(), t.verifierTimeoutMs());
    }

    /** The rollout engine over {@code policy} with the tokenizer's stop ids and the config's prefill budget. */
    public static RolloutEngine rolloutEngine(Decoder policy, Tokenizer tok, TrainConfig cfg) {
        return new RolloutEngine(policy, tok.eosIds(), tok::decode).withPrefillBytes(cfg.rollout().prefillBytes());
    }

    /** Evaluates every set, writes one metrics line per set and prints a summary line. */
    void evaluateAll(Map<String, List<Example>> sets, long step, long seed, MetricsLog metrics, Consumer<String> console) {
        for (var e : sets.entrySet()) {
            Map<String, Object> r = evaluate(e.getValue(), seed);
            Map<String, Object> line = new LinkedHashMap<>();
            line.put("step", step);
            line.put("eval_set", e.getKey());
            line.putAll(r);
            metrics.write(line);
            console.accept(String.format("eval %s @ step %d: greedy accuracy %.3f%s", e.getKey(), step,
                    (double) r.get("eval_accuracy"), r.containsKey("eval_mean_at_k")
                            ? String.format(", mean@%d %.3f", cfg.eval().k(), (double) r.get("eval_mean_at_k")) : ""));
        }
    }

    /** eval_accuracy (greedy), eval_mean_at_k and eval_k (with eval.k > 0), eval_examples. */
    public Map<String, Object> evaluate(List<Example> exs, long seed) {
        int correct = 0, samplesCorrect = 0, samplesTotal = 0;
        var rc = cfg.rollout();
        try (klrl.util.Progress progress = klrl.util.Progress.start("eval", exs.size(), "prompts")) {
            for (int i = 0; i < exs.size(); i += BATCH) {
                List<Example> part = exs.subList(i, Math.min(exs.size(), i + BATCH));
                List<long[]> ids = part.stream().map(prompts::ids).toList();
                correct += correct(part, generator.generate(ids, SamplingParams.greedy(rc.maxNewTokens())));
                if (cfg.eval().k() > 0) {
                    List<Sample> s = generator.generate(ids, new SamplingParams(rc.maxNewTokens(), cfg.eval().temperature(), rc.topP(),
                            rc.topK(), cfg.eval().k(), rc.stop(), seed + i));
                    samplesCorrect += correct(part, s);
                    samplesTotal += s.size();
                }
                progress.step(part.size());
            }
        }
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("eval_accuracy", (double) correct / exs.size());
        if (samplesTotal > 0) {
            r.put("eval_mean_at_k", (double) samplesCorrect / samplesTotal);
            r.put("eval_k", cfg.eval().k());
        }
        r.put("eval_examples", exs.size());
        return r;
    }

    private int correct(List<Example> part, List<Sample> samples) {
        return (int) score(part, samples).stream().filter(RewardPool.Scored::correct).count();
    }

    /** The verifier's verdict on each sample against its prompt's gold answer. */
    List<RewardPool.Scored> score(List<Example> exs, List<Sample> samples) {
        List<String> texts = samples.stream().map(s -> tok.decodeSkippingSpecial(s.responseIds())).toList();
        List<String> golds = samples.stream().map(s -> exs.get(s.promptIndex()).gold()).toList();
        List<String> questions = samples.stream().map(s -> exs.get(s.promptIndex()).question()).toList();
        return rewards.score(questions, texts, golds);
    }

    /** Every train.samples_every steps: what the model wrote for the first prompts, with reward, answer and gold. */
    void logSamples(MetricsLog log, long step, List<Example> exs, List<Sample> samples, List<RewardPool.Scored> scores) {
        int every = cfg.train().samplesEvery();
        if (log == null || every == 0 || (step + 1) % every != 0) {
            return;
        }
        for (int i = 0; i < samples.size() && samples.get(i).promptIndex() < cfg.train().samplesPrompts(); i++) {
            Sample s = samples.get(i);
            Example ex = exs.get(s.promptIndex());
            Map<String, Object> line = new LinkedHashMap<>();
            line.put("step", step + 1);
            line.put("prompt", prompts.text(ex));
            line.put("response", tok.decodeSkippingSpecial(s.responseIds()));
            line.put("reward", scores.get(i).reward());
            line.put("correct", scores.get(i).correct());
            line.put("extracted", scores.get(i).extracted());
            line.put("gold", ex.goldAnswer()); // as the verifier reads it, the field as the row holds it beside it
            line.put("gold_raw", ex.gold());
            line.put("finish_reason", s.finishReason());
            log.write(line);
        }
    }
}
