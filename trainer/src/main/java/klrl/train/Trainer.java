package klrl.train;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import klrl.advantage.AdvantageEstimator;
import klrl.checkpoint.Checkpoints;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.data.Dataset;
import klrl.data.Example;
import klrl.data.Prompts;
import klrl.kl.KlController;
import klrl.kl.KlEstimator;
import klrl.kl.KlPlacement;
import klrl.loss.Aggregation;
import klrl.loss.KlLoss;
import klrl.loss.LossConfig;
import klrl.loss.LossTerm;
import klrl.loss.TokenBatch;
import klrl.metrics.MetricsLog;
import klrl.model.Decoder;
import klrl.model.Placement;
import klrl.model.Lora;
import klrl.model.Tokenizer;
import klrl.optim.AdamW;
import klrl.optim.LrSchedule;
import klrl.reward.RewardPool;
import klrl.rollout.RolloutEngine;
import klrl.rollout.Sample;
import klrl.rollout.SamplingParams;
import klrl.util.Runtime;
import klrl.util.UserError;

/**
 * The RL loop: rollout → reward → reference → KL → advantage → update → log, one flat step at a
 * time. Every pluggable choice (advantage estimator, KL estimator and placement, loss terms) comes in
 * through the config; this class has no case for any of them.
 */
public final class Trainer implements AutoCloseable {
    private final TrainConfig cfg;
    private final Path out, modelDir;
    private final NDManager root;
    private final Tokenizer tok;
    private final Decoder policy, reference; // reference == policy (adapters off) under LoRA
    private final boolean lora, ppo;
    private final ValueHead valueHead;
    private final Placement placement;
    private final Decoder critic; // PPO: the policy itself (value head on its trunk) or a separate copy
    private final Map<String, NDArray> trainable = new LinkedHashMap<>();
    private final Map<String, Lora> adapters;
    private final AdamW opt;
    private final LrSchedule lr;
    private final KlController kl;
    private final LossConfig lossCfg;
    private final List<LossTerm> terms;
    private final AdvantageEstimator advantage;
    private final AdvantageEstimator.Config advCfg;
    private final RewardPool rewards;
    private final Prompts prompts;
    private final List<Example> train;
    private final Map<String, List<Example>> evalSets = new LinkedHashMap<>();
    private final RolloutEngine engine;
    private final AtomicBoolean stop = new AtomicBoolean();
    private long startStep;
    private final ArrayDeque<Rollout> lagQueue = new ArrayDeque<>();

    /** One step's sampled data, kept whole for the off-policy lag queue. */
    record Rollout(long step, List<Example> examples, List<Sample> samples, List<RewardPool.Scored> scores,
                   double secondsRollout, double secondsReward) {}

    public Trainer(TrainConfig cfg, Path resume, java.util.function.Consumer<String> log) throws IOException {
        this.cfg = cfg;
        this.out = Path.of(cfg.outputDir());
        Files.createDirectories(out);
        DataType dtype = Runtime.dtype(cfg.model().dtype());
        List<Device> devices = Placement.parseDevices(cfg.model().device(), Runtime::device);
        this.modelDir = cfg.model().path() != null ? Path.of(cfg.model().path()) : TinyDefault.ensure(log);
        // Layers in contiguous groups over the devices; this trainer's own tensors (logits, losses,
        // advantages, sampling) live with the head on the last one.
        this.placement = Placement.balanced(devices, klrl.model.ModelConfig.load(modelDir));
        this.root = NDManager.newBaseManager(placement.output(), "PyTorch");
        Runtime.noGradOutsideCollectors();
        if (placement.stages() > 1) {
            log.accept("layers per device " + devices + ": " + java.util.Arrays.toString(placement.layerCounts()));
        }
        if (!placement.output().isGpu()) {
            log.accept("MKL kernels: " + Runtime.mklKernels());
        } else if (dtype == DataType.FLOAT32) {
            log.accept(Runtime.tf32() ? "fp32 matmuls on TF32 tensor cores (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1)"
                    : "fp32 matmuls in full IEEE fp32 (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 at launch selects TF32)");
        }
        this.tok = Tokenizer.load(modelDir);
        this.policy = Decoder.load(modelDir, root, dtype, placement);
        this.lora = cfg.model().lora().rank() > 0;
        this.ppo = cfg.algorithm().name().equals("ppo");
        if (lora) {
            var l = cfg.model().lora();
            adapters = policy.addAdapters(l.targetModules(), l.rank(), l.alpha(), l.dropout(), cfg.train().seed());
            adapters.forEach((name, a) -> {
                String base = "base_model.model." + name.substring(0, name.length() - ".weight".length());
                trainable.put(base + ".lora_A.weight", a.a);
                trainable.put(base + ".lora_B.weight", a.b);
            });
            reference = policy;
        } else {
            adapters = Map.of();
            trainable.putAll(policy.parameters());
            reference = Decoder.load(modelDir, root, dtype, placement);
        }
        this.valueHead = ppo ? new ValueHead(root, policy.config.hiddenSize(), cfg.train().seed()) : null;
        boolean separateCritic = ppo && cfg.model().critic().equals("separate");
        this.critic = separateCritic ? Decoder.load(modelDir, root, dtype, placement) : policy;
        Map<String, Double> lrScale = new LinkedHashMap<>();
        if (separateCritic) {
            critic.parameters().forEach((k, v) -> {
                trainable.put("critic." + k, v);
                lrScale.put("critic." + k, cfg.algorithm().valueLr() / cfg.optim().lr());
            });
        }
        if (valueHead != null) {
            valueHead.parameters().forEach((k, v) -> {
                trainable.put(k, v);
                lrScale.put(k, cfg.algorithm().valueLr() / cfg.optim().lr());
            });
        }
        var o = cfg.optim();
        this.opt = new AdamW(trainable, lrScale, new AdamW.Hyper(o.beta1(), o.beta2(), o.eps(), o.weightDecay()), root);
        int updatesPerStep = cfg.algorithm().ppoEpochs() * (cfg.train().batchSize() / cfg.train().miniBatchSize());
        this.lr = new LrSchedule(o.lr(), o.warmupSteps() * updatesPerStep, o.schedule(), o.minLrRatio(),
                cfg.train().maxSteps() * updatesPerStep);
        this.kl = new KlController(cfg.kl().coef(), cfg.kl().target(), cfg.kl().horizon());
        var a = cfg.algorithm();
        this.lossCfg = new LossConfig(Aggregation.parse(a.lossAggMode()), a.clipRatioLow(), a.clipRatioHigh(), a.clipRatioC(),
                cfg.kl().parsedEstimator(), cfg.kl().parsedPlacement(), kl.value(), cfg.kl().safeguards(), a.entropyCoef(),
                a.valueClip(), a.valueCoef());
        this.terms = LossTerm.forConfig(lossCfg, ppo);
        this.advantage = AdvantageEstimator.parse(a.resolvedAdvantage());
        this.advCfg = new AdvantageEstimator.Config(a.normAdvByStd(), a.gamma(), a.lambda(), 1e-6);
        this.rewards = new RewardPool(cfg.train().reward(), cfg.train().formatRewardWeight(), cfg.train().rewardWorkers(),
                cfg.train().verifierTimeoutMs());
        var d = cfg.data();
        this.prompts = new Prompts(tok, d);
        this.train = Dataset.load(d.train() != null ? d.train() : Dataset.BUNDLED_TRAIN, d.promptField(), d.answerField());
        String evalSpec = d.eval() != null ? d.eval() : Dataset.BUNDLED_TEST;
        for (String e : evalSpec.split(",")) {
            if (!e.isBlank()) {
                List<Example> ex = Dataset.load(e.strip(), d.promptField(), d.answerField());
                evalSets.put(Path.of(e.strip().replace("bundled:", "")).getFileName().toString().replace(".jsonl", ""),
                        ex.subList(0, Math.min(ex.size(), cfg.eval().maxExamples())));
            }
        }
        // Every prompt is rendered once up front: a bad row fails now, not at step 500.
        train.forEach(prompts::ids);
        evalSets.values().forEach(l -> l.forEach(prompts::ids));
        this.engine = new RolloutEngine(policy, tok.eosIds(), tok::decode)
                .withPrefillBytes(cfg.rollout().prefillBytes());
        if (resume != null) {
            restore(Checkpoints.resolve(resume));
        }
        klrl.util.Json.writeAtomically(out.resolve("config.yaml"), ConfigLoader.toYaml(cfg));
    }

    /** Asks the loop to checkpoint and return after the current step (SIGTERM). */
    public void requestStop() {
        stop.set(true);
    }

    public long startStep() {
        return startStep;
    }

    /** Seeds derived from (seed, step, purpose): resuming at step s replays exactly what step s would have done. */
    static long seed(long base, long step, int purpose) {
        long h = base * 0x9E3779B97F4A7C15L + step * 0xBF58476D1CE4E5B9L + purpose * 0x94D049BB133111EBL;
        h ^= h >>> 31;
        h *= 0xD6E8FEB86659FD93L;
        return h ^ (h >>> 32);
    }

    /** Prompts of step s: epoch-wise seeded permutations of the training set. */
    List<Example> batchAt(long step) {
        int b = cfg.train().batchSize();
        List<Example> outList = new ArrayList<>(b);
        for (int i = 0; i < b; i++) {
            long pos = step * b + i;
            long epoch = pos / train.size();
            int[] perm = permutation(train.size(), seed(cfg.train().seed(), epoch, 1));
            outList.add(train.get(perm[(int) (pos % train.size())]));
        }
        return outList;
    }

    private final Map<Long, int[]> perms = new java.util.HashMap<>();

    private int[] permutation(int n, long s) {
        return perms.computeIfAbsent(s, k -> {
            int[] p = new int[n];
            for (int i = 0; i < n; i++) {
                p[i] = i;
            }
            java.util.SplittableRandom r = new java.util.SplittableRandom(k);
            for (int i = n - 1; i > 0; i--) {
                int j = r.nextInt(i + 1);
                int t = p[i];
                p[i] = p[j];
                p[j] = t;
            }
            return p;
        });
    }

    public void run(java.util.function.Consumer<String> console) throws IOException {
        long maxSteps = cfg.train().maxSteps();
        try (MetricsLog metrics = new MetricsLog(out.resolve("metrics.jsonl"), startStep > 0 ? startStep : -1)) {
            if (cfg.eval().beforeStart() && startStep == 0) {
                evaluate(0, metrics, console);
            }
            for (long step = startStep; step < maxSteps && !stop.get(); step++) {
                Map<String, Object> m = step(step);
                metrics.write(m);
                console.accept(String.format("step %d/%d  reward %.3f  acc %.3f  kl_k1 %.4f  kl_k3 %.4f  len %.1f  %.2fs",
                        step + 1, maxSteps, (double) m.get("reward_mean"), (double) m.get("accuracy"), (double) m.get("kl_k1"),
                        (double) m.get("kl_k3"), (double) m.get("response_length"), (double) m.get("time_step")));
                boolean last = step + 1 == maxSteps;
                if (cfg.eval().every() > 0 && ((step + 1) % cfg.eval().every() == 0) || last) {
                    evaluate(step + 1, metrics, console);
                }
                if ((cfg.checkpoint().every() > 0 && (step + 1) % cfg.checkpoint().every() == 0) || last || stop.get()) {
                    Path c = save(step + 1);
                    console.accept("checkpoint " + c);
                }
            }
        }
    }

    /** One RL step. Returns its metrics record. */
    Map<String, Object> step(long step) {
        long t0 = System.nanoTime();
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("step", step + 1);
        var rc = cfg.rollout();
        // 1. Rollout: n samples per prompt from the current policy (behaviour log-probs recorded).
        List<Example> exs = batchAt(step);
        List<long[]> promptIds = exs.stream().map(prompts::ids).toList();
        policy.setTraining(false);
        long tr = System.nanoTime();
        sizeKvCache();
        List<Sample> samples = engine.generate(promptIds, new SamplingParams(rc.maxNewTokens(), rc.temperature(), rc.topP(),
                rc.topK(), rc.n(), rc.stop(), seed(cfg.train().seed(), step, 2)), root);
        double secRollout = (System.nanoTime() - tr) / 1e9;
        releaseCachedGpuMemory(); // the KV cache's blocks go back before the update's activations
        // 2. Reward: verifier in worker threads.
        long tw = System.nanoTime();
        List<String> texts = samples.stream().map(s -> tok.decodeSkippingSpecial(s.responseIds())).toList();
        List<String> golds = samples.stream().map(s -> exs.get(s.promptIndex()).gold()).toList();
        List<String> ptexts = samples.stream().map(s -> exs.get(s.promptIndex()).question()).toList();
        List<RewardPool.Scored> scores = rewards.score(ptexts, texts, golds);
        double secReward = (System.nanoTime() - tw) / 1e9;
        // Off-policy lag K: train on the rollout made K policy versions ago (importance ratios use its log-probs).
        lagQueue.addLast(new Rollout(step, exs, samples, scores, secRollout, secReward));
        Rollout ro = lagQueue.size() > cfg.algorithm().offPolicyLag() ? lagQueue.removeFirst() : null;
        m.put("reward_mean", mean(scores.stream().mapToDouble(RewardPool.Scored::reward).toArray()));
        m.put("accuracy", mean(scores.stream().mapToDouble(s -> s.correct() ? 1 : 0).toArray()));
        m.put("response_length", mean(samples.stream().mapToDouble(s -> s.responseIds().length).toArray()));
        m.put("verifier_timeouts", scores.stream().filter(RewardPool.Scored::timedOut).count());
        if (ro == null) {
            m.put("time_rollout", secRollout);
            m.put("time_reward", secReward);
            m.put("time_step", (System.nanoTime() - t0) / 1e9);
            m.put("kl_k1", 0.0);
            m.put("kl_k3", 0.0);
            m.put("kl_forward", 0.0);
            m.put("kl_coef", kl.value());
            m.put("lr", lr.at((int) opt.steps()));
            return m; // still filling the lag queue
        }
        Map<String, Object> upd = update(ro);
        m.putAll(upd);
        m.put("time_rollout", secRollout);
        m.put("time_reward", secReward);
        double secs = (System.nanoTime() - t0) / 1e9;
        long tokens = samples.stream().mapToLong(s -> s.promptIds().length + s.responseIds().length).sum();
        m.put("tokens_per_s", tokens / secs);
        m.put("time_step", secs);
        // Leak watch: every step's tensors live in scopes that close with the step, so both stay flat.
        m.put("live_arrays", root.getManagedArrays().size());
        long rss = residentMb();
        if (rss >= 0) {
            m.put("rss_mb", rss);
        }
        return m;
    }

    /** This process's resident memory in MiB (Linux /proc), or −1 where that is not readable. */
    static long residentMb() {
        try {
            for (String l : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (l.startsWith("VmRSS:")) {
                    return Long.parseLong(l.replaceAll("[^0-9]", "")) / 1024;
                }
            }
        } catch (IOException | RuntimeException e) {
            // not Linux: the metric is left out
        }
        return -1;
    }

    /** Reference log-probs, KL shaping, advantages, then ppo_epochs × mini-batches × micro-batches of updates. */
    private Map<String, Object> update(Rollout ro) {
        Map<String, Object> m = new LinkedHashMap<>();
        List<Sample> samples = ro.samples();
        int n = samples.size();
        SequenceBatch all = SequenceBatch.of(samples.stream().map(Sample::promptIds).toList(),
                samples.stream().map(Sample::responseIds).toList(), (int) tok.padId());
        int r = all.r(), micro = cfg.train().microBatchSize();
        float temp = (float) cfg.rollout().temperature();
        float[] oldLogp = new float[n * r];
        for (int i = 0; i < n; i++) {
            float[] lp = samples.get(i).logprobs();
            System.arraycopy(lp, 0, oldLogp, i * r, lp.length);
        }
        // 3. Reference log-probs (and old values for PPO), no graph.
        long tref = System.nanoTime();
        float[] refLogp = new float[n * r], oldValues = ppo ? new float[n * r] : null;
        // the "full" estimator shapes rewards with the exact per-token KL of the behaviour policy, which
        // needs both full distributions (under off-policy lag, the current policy stands in for it)
        boolean fullShaping = lossCfg.klEstimator() instanceof KlEstimator.Full && lossCfg.klPlacement() instanceof KlPlacement.Reward;
        float[] exactKl = fullShaping ? new float[n * r] : null;
        for (int s0 = 0; s0 < n; s0 += micro) {
            SequenceBatch b = all.slice(s0, Math.min(n, s0 + micro));
            try (NDManager mm = root.newSubManager()) {
                if (lora) {
                    policy.setAdaptersEnabled(false);
                }
                PolicyForward.Out ref = PolicyForward.run(reference, b, mm, temp, fullShaping, false);
                policy.setAdaptersEnabled(true);
                System.arraycopy(ref.logp().toFloatArray(), 0, refLogp, s0 * r, b.rows() * r);
                if (fullShaping) {
                    PolicyForward.Out cur = PolicyForward.run(policy, b, mm, temp, true, false);
                    System.arraycopy(PolicyForward.fullKl(cur.logSoftmax(), ref.logSoftmax()).toFloatArray(), 0, exactKl,
                            s0 * r, b.rows() * r);
                }
                if (ppo) {
                    PolicyForward.Out cur = PolicyForward.run(critic, b, mm, temp, false, false);
                    System.arraycopy(valueHead.apply(cur.hidden()).toFloatArray(), 0, oldValues, s0 * r, b.rows() * r);
                }
            }
        }
        double secRef = (System.nanoTime() - tref) / 1e9;
        // 4. KL per token (of the behaviour policy, as verl) → token-level rewards → advantages.
        float[] adv, returns;
        try (NDManager mm = root.newSubManager()) {
            NDArray mask = all.mask(mm), old = all.tensor(mm, oldLogp), ref = all.tensor(mm, refLogp);
            m.putAll(KlLoss.metrics(old, ref, mask));
            KlEstimator est = lossCfg.klEstimator();
            // with "full" outside the reward, k only measures the KL for the adaptive controller: k1 does
            NDArray k = est instanceof KlEstimator.Full && !fullShaping ? old.sub(ref)
                    : est.perToken(old, ref, fullShaping ? all.tensor(mm, exactKl) : null, lossCfg.klSafeguards());
            float[] score = new float[n * r];
            for (int i = 0; i < n; i++) {
                int len = samples.get(i).responseIds().length;
                if (len > 0) {
                    score[i * r + len - 1] = (float) ro.scores().get(i).reward();
                }
            }
            NDArray tokenRewards = lossCfg.klPlacement().shapeRewards(all.tensor(mm, score), k, mask, kl.value());
            int[] groups = samples.stream().mapToInt(Sample::promptIndex).toArray();
            AdvantageEstimator.Result res = advantage.compute(tokenRewards, mask, groups,
                    ppo ? all.tensor(mm, oldValues) : null, advCfg);
            adv = res.advantages().toFloatArray();
            returns = res.returns().toFloatArray();
            double meanKl = k.mul(mask).sum().div(mask.sum()).getFloat();
            kl.update(meanKl, n);
        }
        // 5. Update: ppo_epochs passes over mini-batches (groups of whole prompts), micro-batched.
        long tu = System.nanoTime();
        policy.setTraining(true);
        int perPrompt = cfg.rollout().n();
        int miniRows = cfg.train().miniBatchSize() * perPrompt;
        LossConfig lc = lossCfg.withKlCoef(kl.value());
        Map<String, double[]> acc = new LinkedHashMap<>();
        double gradNormSum = 0;
        int updates = 0;
        double entropySum = 0;
        for (int epoch = 0; epoch < cfg.algorithm().ppoEpochs(); epoch++) {
            for (int m0 = 0; m0 < n; m0 += miniRows) {
                int m1 = Math.min(n, m0 + miniRows);
                float[] w;
                try (NDManager mm = root.newSubManager()) {
                    SequenceBatch mini = all.slice(m0, m1);
                    w = lc.aggregation().weights(mini.mask(mm)).toFloatArray();
                }
                for (int s0 = m0; s0 < m1; s0 += micro) {
                    int s1 = Math.min(m1, s0 + micro);
                    SequenceBatch b = all.slice(s0, s1);
                    final int fs0 = s0, fs1 = s1, fm0 = m0;
                    try (NDManager mm = root.newSubManager()) {
                        NDArray mask = b.mask(mm);
                        // forward head → token batch → loss terms; differentiated end to end, or staged
                        // with per-layer recomputation when train.checkpoint_layers > 0
                        java.util.function.Function<PolicyForward.Out, LossTerm.Out> lossOf = cur -> {
                            NDArray fullKl = null;
                            if (lc.klEstimator() instanceof KlEstimator.Full) {
                                if (lora) {
                                    policy.setAdaptersEnabled(false);
                                }
                                PolicyForward.Out ref = PolicyForward.run(reference, b, mm, temp, true);
                                policy.setAdaptersEnabled(true);
                                fullKl = PolicyForward.fullKl(cur.logSoftmax(), ref.logSoftmax().stopGradient());
                            }
                            TokenBatch tb = new TokenBatch(cur.logp(), slice(mm, oldLogp, fs0, fs1, r),
                                    slice(mm, refLogp, fs0, fs1, r), slice(mm, adv, fs0, fs1, r), mask, cur.entropy(), fullKl,
                                    ppo ? valueHead.apply(critic == policy ? cur.hidden()
                                            : PolicyForward.run(critic, b, mm, temp, false).hidden()) : null,
                                    ppo ? slice(mm, oldValues, fs0, fs1, r) : null, ppo ? slice(mm, returns, fs0, fs1, r) : null,
                                    mm.create(java.util.Arrays.copyOfRange(w, (fs0 - fm0) * r, (fs1 - fm0) * r), new Shape(fs1 - fs0, r)));
                            LossTerm.Out o = LossTerm.total(terms, tb, lc);
                            if (!Double.isFinite(o.metrics().get("loss_total"))) {
                                throw new UserError("loss is " + o.metrics().get("loss_total") + " at step " + (ro.step() + 1)
                                        + "; lower optim.lr or check the data");
                            }
                            return o;
                        };
                        boolean full = lc.klEstimator() instanceof KlEstimator.Full;
                        PolicyForward.Out[] cur = new PolicyForward.Out[1];
                        LossTerm.Out o;
                        int ckpt = cfg.train().checkpointLayers();
                        if (ckpt > 0 || placement.stages() > 1) {
                            o = StagedBackward.run(policy, b, mm, ckpt, h -> {
                                cur[0] = PolicyForward.head(policy, b, mm, h, temp, full, true);
                                return lossOf.apply(cur[0]);
                            }, x -> scaled(x.loss()));
                        } else {
                            try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                                cur[0] = PolicyForward.run(policy, b, mm, temp, full);
                                o = lossOf.apply(cur[0]);
                                gc.backward(scaled(o.loss()));
                            }
                        }
                        double rows = (double) (s1 - s0) / (m1 - m0);
                        o.metrics().forEach((key, v) -> acc.computeIfAbsent(key, z -> new double[1])[0] += v * rows);
                        entropySum += cur[0].entropy().stopGradient().mul(mask).sum().getFloat();
                    }
                }
                double lrNow = lr.at((int) opt.steps());
                double gn = opt.step(lrNow, cfg.optim().gradClip());
                if (Double.isFinite(gn)) { // NaN: a mixed-precision overflow, skipped and rescaled
                    gradNormSum += gn;
                    updates++;
                }
            }
        }
        policy.setTraining(false);
        releaseCachedGpuMemory();
        double tokens = 0;
        for (float f : all.responseMask()) {
            tokens += f;
        }
        int passes = cfg.algorithm().ppoEpochs() * ((n + miniRows - 1) / miniRows);
        acc.forEach((key, v) -> m.put(key, v[0] / passes));
        m.put("entropy", entropySum / (tokens * cfg.algorithm().ppoEpochs()));
        m.put("kl_coef", kl.value());
        m.put("grad_norm", updates == 0 ? Double.NaN : gradNormSum / updates);
        if (opt.lossScale() != 1) {
            m.put("loss_scale", opt.lossScale());
            m.put("skipped_updates", opt.skippedSteps());
        }
        m.put("lr", lr.at((int) opt.steps() - 1));
        m.put("time_reference", secRef);
        m.put("time_update", (System.nanoTime() - tu) / 1e9);
        return m;
    }

    /**
     * Caps the sequences decoded at once: rollout.kv_cache_gb per device, or, when it is 0 on GPUs,
     * what each GPU has free up to rollout.gpu_memory_utilization of its memory (read before every
     * rollout, since the update before it held activations).
     */
    private void sizeKvCache() {
        long perSeq = RolloutEngine.kvBytesPerSequence(policy, cfg.data().maxPromptTokens() + cfg.rollout().maxNewTokens());
        long[] budget = new long[placement.stages()];
        boolean gpu = placement.output().isGpu();
        for (int i = 0; i < budget.length; i++) {
            if (cfg.rollout().kvCacheGb() > 0) {
                budget[i] = cfg.rollout().kvCacheBytes();
            } else if (gpu) {
                var u = ai.djl.util.cuda.CudaUtils.getGpuMemory(placement.devices().get(i));
                // the prefill's activations come on top of the cache while it is being filled
                budget[i] = (long) (cfg.rollout().gpuMemoryUtilization() * u.getMax()) - u.getUsed()
                        - cfg.rollout().prefillBytes();
            } else {
                budget[i] = Long.MAX_VALUE; // CPU: host memory, no cap
            }
        }
        engine.withMaxRows(RolloutEngine.rowsThatFit(perSeq, budget));
    }

    /** Returns PyTorch's cached, unused GPU blocks so the next phase (and the free-memory reading) sees them. */
    private void releaseCachedGpuMemory() {
        if (placement.output().isGpu()) {
            ai.djl.pytorch.jni.JniUtils.emptyCudaCache();
        }
    }

    /** The loss times the optimizer's loss scale (1 unless parameters are fp16). */
    private NDArray scaled(NDArray loss) {
        return opt.lossScale() == 1 ? loss : klrl.util.Nd.mul(loss, opt.lossScale());
    }

    private static NDArray slice(NDManager m, float[] v, int s0, int s1, int r) {
        return m.create(java.util.Arrays.copyOfRange(v, s0 * r, s1 * r), new Shape(s1 - s0, r));
    }

    static double mean(double[] v) {
        double s = 0;
        for (double x : v) {
            s += x;
        }
        return v.length == 0 ? 0 : s / v.length;
    }

    /** Greedy accuracy and mean@k on each held-out set. */
    public void evaluate(long step, MetricsLog metrics, java.util.function.Consumer<String> console) {
        for (var e : evalSets.entrySet()) {
            Map<String, Object> r = evaluate(e.getValue(), seed(cfg.train().seed(), step, 3));
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

    public Map<String, Object> evaluate(List<Example> exs, long seed) {
        policy.setTraining(false);
        int batch = 64;
        int correct = 0, samplesCorrect = 0, samplesTotal = 0;
        var rc = cfg.rollout();
        for (int i = 0; i < exs.size(); i += batch) {
            List<Example> part = exs.subList(i, Math.min(exs.size(), i + batch));
            List<long[]> ids = part.stream().map(prompts::ids).toList();
            List<Sample> greedy = engine.generate(ids, SamplingParams.greedy(rc.maxNewTokens()), root);
            correct += score(part, greedy);
            if (cfg.eval().k() > 0) {
                List<Sample> s = engine.generate(ids, new SamplingParams(rc.maxNewTokens(), cfg.eval().temperature(), rc.topP(),
                        rc.topK(), cfg.eval().k(), rc.stop(), seed + i), root);
                samplesCorrect += score(part, s);
                samplesTotal += s.size();
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

    private int score(List<Example> part, List<Sample> samples) {
        List<String> texts = samples.stream().map(s -> tok.decodeSkippingSpecial(s.responseIds())).toList();
        List<String> golds = samples.stream().map(s -> part.get(s.promptIndex()).gold()).toList();
        List<String> qs = samples.stream().map(s -> part.get(s.promptIndex()).question()).toList();
        return (int) rewards.score(qs, texts, golds).stream().filter(RewardPool.Scored::correct).count();
    }

    /** Writes a checkpoint after {@code stepsDone} steps. */
    public Path save(long stepsDone) throws IOException {
        Map<String, NDArray> weights = new LinkedHashMap<>();
        if (lora) {
            trainable.forEach((k, v) -> {
                if (k.startsWith("base_model.")) {
                    weights.put(k, v);
                }
            });
        } else {
            weights.putAll(policy.parameters());
        }
        Map<String, Object> adapterCfg = new LinkedHashMap<>();
        if (lora) {
            var l = cfg.model().lora();
            adapterCfg.put("peft_type", "LORA");
            adapterCfg.put("r", l.rank());
            adapterCfg.put("lora_alpha", l.alpha());
            adapterCfg.put("lora_dropout", l.dropout());
            adapterCfg.put("target_modules", l.targetModules());
            adapterCfg.put("bias", "none");
            adapterCfg.put("task_type", "CAUSAL_LM");
            adapterCfg.put("base_model_name_or_path", modelDir.toAbsolutePath().toString());
        }
        return Checkpoints.save(out, modelDir, new Checkpoints.State(stepsDone, opt.steps(), kl.value(), Map.of("loss_scale", opt.lossScale())),
                weights, lora, adapterCfg, valueHead == null ? null : criticState(), opt.stateTensors(),
                cfg.checkpoint().keep());
    }

    /** PPO's critic: the value head, plus the separate critic model's weights when there is one. */
    private Map<String, NDArray> criticState() {
        Map<String, NDArray> c = new LinkedHashMap<>(valueHead.parameters());
        if (critic != policy) {
            critic.parameters().forEach((k, v) -> c.put("critic." + k, v));
        }
        return c;
    }

    private void restore(Path ckpt) {
        var st = Checkpoints.state(ckpt);
        try (NDManager m = root.newSubManager()) {
            if (lora) {
                Map<String, NDArray> live = new LinkedHashMap<>();
                trainable.forEach((k, v) -> {
                    if (k.startsWith("base_model.")) {
                        live.put(k, v);
                    }
                });
                Checkpoints.copyInto(live, Checkpoints.readAll(ckpt.resolve("adapter_model.safetensors"), m),
                        ckpt + "/adapter_model.safetensors");
            } else {
                Map<String, NDArray> saved = new LinkedHashMap<>();
                klrl.model.SafeTensors.index(ckpt).forEach((k, e) -> saved.put(k, klrl.model.SafeTensors.load(e, m, DataType.FLOAT32)));
                Checkpoints.copyInto(policy.parameters(), saved, ckpt.toString());
            }
            if (valueHead != null) {
                Checkpoints.copyInto(criticState(), Checkpoints.readAll(ckpt.resolve("value_head.safetensors"), m),
                        ckpt + "/value_head.safetensors");
            }
            opt.restore(Checkpoints.readAll(ckpt.resolve("optimizer.safetensors"), m), st.get("optimizer_steps").asLong(),
                    st.path("extra").path("loss_scale").asDouble(1));
        }
        kl.restore(st.get("kl_coef").asDouble());
        startStep = st.get("step").asLong();
    }

    @Override
    public void close() {
        rewards.close();
        tok.close();
        opt.close();
        root.close();
    }
}
