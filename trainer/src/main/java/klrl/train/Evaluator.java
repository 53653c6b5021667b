package klrl.train;

import ai.djl.ndarray.NDManager;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import klrl.config.TrainConfig;
import klrl.data.Example;
import klrl.data.Prompts;
import klrl.eval.EvalScores;
import klrl.metrics.MetricsLog;
import klrl.model.Decoder;
import klrl.model.Tokenizer;
import klrl.plan.MemoryPlan;
import klrl.reward.RewardPool;
import klrl.rollout.RolloutEngine;
import klrl.rollout.Sample;
import klrl.rollout.SamplingParams;

/** Greedy accuracy, mean@k, pass@k and maj@k of the policy on held-out sets, with the rollout engine and the verifier. */
public final class Evaluator {
    private static final int BATCH = 64, SAMPLES_A_BATCH = 4_096;

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
        return evaluateModel(cfg, modelDir, rows, maxExamples, seed, null);
    }

    /** As above; {@code samplesOut} receives each prompt's line ({@link #sampleLine}), or is null. */
    public static Map<String, Object> evaluateModel(TrainConfig cfg, java.nio.file.Path modelDir, List<Example> rows, int maxExamples,
                                                    long seed, Consumer<Map<String, Object>> samplesOut) throws java.io.IOException {
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
            List<Example> exs = cfg.data().filterOverlong() ? fitting(rows, maxExamples, prompts)
                    : rows.subList(0, Math.min(rows.size(), maxExamples));
            if (exs.isEmpty() && !rows.isEmpty() && cfg.data().filterOverlong()) {
                throw new klrl.util.UserError("every prompt is over data.max_prompt_tokens=" + prompts.maxTokens()
                        + ", so data.overlong_prompts: filter leaves none to evaluate; raise data.max_prompt_tokens");
            }
            if (exs.isEmpty()) {
                throw new klrl.util.UserError("no rows to evaluate");
            }
            exs.forEach(prompts::ids); // a bad row fails before any generation
            RolloutEngine engine = rolloutEngine(policy, tok, cfg).withMaxRows(MemoryPlan.kvRows(cfg, policy));
            return new Evaluator((ids, p) -> engine.generate(ids, p, root), prompts, tok, rewards, cfg).evaluate(exs, seed, samplesOut);
        }
    }

    /**
     * The first {@code limit} rows whose prompts fit data.max_prompt_tokens, measured 1,024 at a time with the
     * tokenizer's batch encode; a row before them that cannot be rendered, or renders empty, is refused by name.
     */
    static List<Example> fitting(List<Example> rows, int limit, Prompts prompts) {
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < rows.size() && out.size() < limit; i += 1_024) {
            List<Example> part = rows.subList(i, Math.min(rows.size(), i + 1_024));
            Prompts.Measured m = prompts.measure(part);
            for (int j = 0; j < m.tokens().length && out.size() < limit; j++) {
                if (m.tokens()[j] == 0) {
                    throw Prompts.empty(part.get(j).source());
                }
                if (m.tokens()[j] <= prompts.maxTokens()) {
                    out.add(part.get(j));
                }
            }
            if (m.error() != null && out.size() < limit) {
                throw m.error();
            }
        }
        return out;
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
            console.accept("eval " + e.getKey() + " @ step " + step + ": " + summary(r));
        }
    }

    /** "greedy accuracy 0.540, mean@4 0.389, pass@4 0.712, maj@4 0.560": the headline numbers of an evaluation. */
    static String summary(Map<String, Object> r) {
        StringBuilder b = new StringBuilder(String.format(java.util.Locale.ROOT, "greedy accuracy %.3f", (double) r.get("eval_accuracy")));
        if (r.get("eval_k") instanceof Integer k) {
            var pass = (Map<?, ?>) r.get("eval_pass_at");
            b.append(String.format(java.util.Locale.ROOT, ", mean@%d %.3f, pass@%d %.3f, maj@%d %.3f", k, (double) r.get("eval_mean_at_k"), k,
                    (double) pass.get(Integer.toString(k)), k, (double) r.get("eval_maj_at_k")));
        }
        return b.toString();
    }

    /** The numbers of {@link EvalScores#summarize}: greedy accuracy, and with eval.k > 0 mean@k, pass@1…k and maj@k. */
    public Map<String, Object> evaluate(List<Example> exs, long seed) {
        return evaluate(exs, seed, null);
    }

    /**
     * As above; with {@code samplesOut} each prompt's completions, answers, answer classes and verdicts
     * as one line ({@link #sampleLine}), in the order of the prompts.
     */
    public Map<String, Object> evaluate(List<Example> exs, long seed, Consumer<Map<String, Object>> samplesOut) {
        int k = cfg.eval().k();
        var rc = cfg.rollout();
        List<EvalScores.Prompt> results = new ArrayList<>();
        // a generation holds a batch of prompts' k samples each: up to 64 prompts, fewer at large k
        int batch = Math.max(1, Math.min(BATCH, SAMPLES_A_BATCH / Math.max(1, k)));
        try (klrl.util.Progress progress = klrl.util.Progress.start("eval", exs.size(), "prompts")) {
            for (int i = 0; i < exs.size(); i += batch) {
                List<Example> part = exs.subList(i, Math.min(exs.size(), i + batch));
                List<long[]> ids = part.stream().map(prompts::ids).toList();
                List<Sample> greedy = generator.generate(ids, SamplingParams.greedy(rc.maxNewTokens()));
                List<RewardPool.Scored> greedyScores = score(part, greedy);
                List<List<Integer>> byPrompt = new ArrayList<>(); // sample indices of each prompt, in order
                part.forEach(e -> byPrompt.add(new ArrayList<>()));
                List<Sample> samples = List.of();
                List<RewardPool.Scored> scores = List.of();
                List<int[]> classes = List.of();
                if (k > 0) {
                    samples = generator.generate(ids, new SamplingParams(rc.maxNewTokens(), cfg.eval().temperature(), rc.topP(),
                            rc.topK(), k, rc.stop(), seed + i));
                    scores = score(part, samples);
                    for (int j = 0; j < samples.size(); j++) {
                        byPrompt.get(samples.get(j).promptIndex()).add(j);
                    }
                    List<RewardPool.Scored> sc = scores;
                    classes = rewards.answerClasses(byPrompt.stream().map(js -> js.stream().map(j -> sc.get(j).extracted()).toList()).toList());
                }
                for (int p = 0; p < part.size(); p++) {
                    boolean[] correct = new boolean[byPrompt.get(p).size()];
                    for (int j = 0; j < correct.length; j++) {
                        correct[j] = scores.get(byPrompt.get(p).get(j)).correct();
                    }
                    int g = greedyIndex(greedy, p);
                    var prompt = new EvalScores.Prompt(part.get(p), greedyScores.get(g).correct(), correct,
                            k > 0 ? classes.get(p) : new int[0]);
                    results.add(prompt);
                    if (samplesOut != null) {
                        List<Sample> mine = new ArrayList<>();
                        List<RewardPool.Scored> mineScores = new ArrayList<>();
                        for (int j : byPrompt.get(p)) {
                            mine.add(samples.get(j));
                            mineScores.add(scores.get(j));
                        }
                        samplesOut.accept(sampleLine(prompt, greedy.get(g), greedyScores.get(g), mine, mineScores));
                    }
                }
                progress.step(part.size());
            }
        }
        return EvalScores.summarize(results, k, seed);
    }

    /** The answer extracted, null when there is none (a blank one votes for nothing either). */
    private static String answer(RewardPool.Scored s) {
        return s.extracted() == null || s.extracted().isBlank() ? null : s.extracted();
    }

    private static int greedyIndex(List<Sample> greedy, int prompt) {
        for (int j = 0; j < greedy.size(); j++) {
            if (greedy.get(j).promptIndex() == prompt) {
                return j;
            }
        }
        throw new IllegalStateException("no greedy completion for prompt " + prompt);
    }

    /**
     * One prompt of an evaluation as a JSON line: the prompt as rendered, the gold as the verifier reads it
     * (and as the row holds it), the row's place and labels, the greedy completion with its answer and
     * verdict, and the sampled completions with their answers (null where none), answer classes (null
     * where no answer) and verdicts — all mean@k, pass@k and maj@k are computed from.
     */
    Map<String, Object> sampleLine(EvalScores.Prompt p, Sample greedy, RewardPool.Scored greedyScore, List<Sample> samples,
                                   List<RewardPool.Scored> scores) {
        Example ex = p.example();
        Map<String, Object> line = new LinkedHashMap<>();
        line.put("prompt", prompts.text(ex));
        line.put("gold", ex.goldAnswer());
        line.put("gold_raw", ex.gold());
        line.put("source", ex.source());
        if (ex.labels().dataSource() != null) {
            line.put("data_source", ex.labels().dataSource());
        }
        if (ex.labels().level() != null) {
            line.put("level", ex.labels().level());
        }
        if (ex.labels().type() != null) {
            line.put("type", ex.labels().type());
        }
        line.put("greedy", tok.decodeSkippingSpecial(greedy.responseIds()));
        line.put("greedy_answer", answer(greedyScore));
        line.put("greedy_correct", greedyScore.correct());
        line.put("completions", samples.stream().map(s -> tok.decodeSkippingSpecial(s.responseIds())).toList());
        line.put("answers", scores.stream().map(Evaluator::answer).toList());
        List<Integer> classes = new ArrayList<>();
        for (int c : p.classes()) {
            classes.add(c < 0 ? null : c);
        }
        line.put("answer_classes", classes);
        line.put("correct", scores.stream().map(RewardPool.Scored::correct).toList());
        line.put("finish_reasons", samples.stream().map(Sample::finishReason).toList());
        return line;
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
