package klrl.train;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import klrl.advantage.AdvantageEstimator;
import klrl.checkpoint.Checkpoints;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.data.Dataset;
import klrl.data.Example;
import klrl.data.Prompts;
import klrl.kl.KlController;
import klrl.loss.Aggregation;
import klrl.loss.LossConfig;
import klrl.loss.LossTerm;
import klrl.metrics.MetricsLog;
import klrl.model.Lora;
import klrl.model.ModelConfig;
import klrl.model.Placement;
import klrl.model.SafeTensors;
import klrl.model.Tokenizer;
import klrl.optim.AdamW;
import klrl.optim.LrSchedule;
import klrl.reward.RewardPool;
import klrl.rollout.RolloutEngine;
import klrl.rollout.Sample;
import klrl.rollout.SamplingParams;
import klrl.util.Json;
import klrl.util.Progress;
import klrl.util.Runtime;

/**
 * The RL loop. {@link #step} is one step as a flat sequence of stages — rollout → reward → reference
 * → shaping (KL and advantages) → policy update → metrics — each stage a small class of this package.
 * Work a stage shares out runs on the {@link Replicas} (one, or one per device); rollouts may run on
 * SGLang/vLLM servers instead ({@link klrl.rollout.remote.RemoteRollout}).
 * The pluggable choices (advantage estimator, KL estimator and placement, loss terms) arrive parsed
 * from the config and are only called here.
 */
public final class Trainer implements AutoCloseable {
    private final TrainConfig cfg;
    private final Path out, modelDir;
    private final OutputLock lock;
    private final NDManager root;
    private final Placement placement;
    private final Tokenizer tok;
    private final Policies nets;
    /** The master replica and, with train.parallel: data over several devices, its copies. */
    private final Replicas replicas;
    private final AdamW opt;
    private final LrSchedule lr;
    private final KlController kl;
    private final LossConfig lossCfg;
    private final PolicyUpdate update;
    private final AdvantageEstimator advantage;
    private final AdvantageEstimator.Config advCfg;
    private final RewardPool rewards;
    private final Prompts prompts;
    private final PromptSchedule schedule;
    private final Map<String, List<Example>> evalSets = new LinkedHashMap<>();
    private final Evaluator evaluator;
    /** Rollouts on SGLang/vLLM servers (rollout.engine), or null when this process generates. */
    private final klrl.rollout.remote.RemoteRollout remote;
    private final AtomicBoolean stop = new AtomicBoolean();
    private final ArrayDeque<Rollout> lagQueue = new ArrayDeque<>();
    private MetricsLog samplesLog; // open while run() runs
    private long startStep;

    /** One step's sampled and scored data, kept whole for the off-policy lag queue. */
    private record Rollout(long step, List<Sample> samples, List<RewardPool.Scored> scores) {}

    public Trainer(TrainConfig cfg, Path resume, Consumer<String> log) throws IOException {
        this.cfg = cfg;
        this.out = Path.of(cfg.outputDir());
        Files.createDirectories(out);
        this.lock = OutputLock.acquire(out);
        Replicas made = null;
        try {
            DataType dtype = Runtime.dtype(cfg.model().dtype());
            List<Device> devices = Placement.parseDevices(cfg.model().device(), Runtime::device);
            this.modelDir = cfg.model().path() != null ? Path.of(cfg.model().path()) : TinyDefault.ensure(log);
            ModelConfig modelConfig = ModelConfig.load(modelDir);
            boolean gpu = devices.get(0).isGpu();
            long deviceBytes = gpu ? ai.djl.util.cuda.CudaUtils.getGpuMemory(devices.get(0)).getMax() : MemoryPlan.hostAvailableBytes();
            // Several devices: a replica on each (data), or contiguous layer groups over them (layers).
            boolean data = dataParallel(cfg, modelConfig, devices, deviceBytes, log);
            // This trainer's own tensors (logits, losses, advantages, sampling) live with the master's head.
            this.placement = data ? Placement.single(devices.get(0), modelConfig.numLayers()) : Placement.balanced(devices, modelConfig);
            MemoryPlan.preflight(cfg, modelConfig, devices, data, deviceBytes, java.lang.Runtime.getRuntime().maxMemory());
            this.root = NDManager.newBaseManager(placement.output(), "PyTorch");
            Runtime.noGradOutsideCollectors();
            logDevices(dtype, log);
            this.tok = Tokenizer.load(modelDir);
            this.nets = Policies.load(cfg, modelDir, root, dtype, placement);
            made = data
                    ? Replicas.data(nets, root, devices, n -> Evaluator.rolloutEngine(n.policy, tok, cfg), r -> kvRows(cfg, r.nets().policy),
                            gpu ? 0 : Math.max(1, ai.djl.pytorch.jni.JniUtils.getNumThreads() / devices.size()))
                    : Replicas.single(nets, root, Evaluator.rolloutEngine(nets.policy, tok, cfg), r -> kvRows(cfg, r.nets().policy));
            this.replicas = made;
            var o = cfg.optim();
            var a = cfg.algorithm();
            this.opt = new AdamW(nets.trainable, nets.lrScale, new AdamW.Hyper(o.beta1(), o.beta2(), o.eps(), o.weightDecay()), root);
            int updatesPerStep = a.ppoEpochs() * (cfg.train().batchSize() / cfg.train().miniBatchSize());
            this.lr = new LrSchedule(o.lr(), o.warmupSteps() * updatesPerStep, o.schedule(), o.minLrRatio(),
                    cfg.train().maxSteps() * updatesPerStep);
            this.kl = new KlController(cfg.kl().coef(), cfg.kl().target(), cfg.kl().horizon());
            this.lossCfg = new LossConfig(Aggregation.parse(a.lossAggMode()), a.clipRatioLow(), a.clipRatioHigh(), a.clipRatioC(),
                    cfg.kl().parsedEstimator(), cfg.kl().parsedPlacement(), kl.value(), cfg.kl().safeguards(), a.entropyCoef(),
                    a.valueClip(), a.valueCoef());
            this.update = new PolicyUpdate(replicas, opt, lr, LossTerm.forConfig(lossCfg, nets.ppo()), a.ppoEpochs(),
                    cfg.train().microBatchSize(), cfg.train().checkpointLayers(), placement.stages() > 1, o.gradClip(),
                    cfg.train().maxSkippedUpdates(), cfg.train().gradVar());
            this.advantage = AdvantageEstimator.parse(a.resolvedAdvantage());
            this.advCfg = new AdvantageEstimator.Config(a.normAdvByStd(), a.gamma(), a.lambda(), 1e-6);
            this.rewards = Evaluator.rewardPool(cfg);
            this.prompts = new Prompts(tok, cfg.data().promptFormat());
            this.schedule = new PromptSchedule(loadData(), cfg.train().batchSize(), cfg.train().seed());
            this.evaluator = new Evaluator((ids, p) -> replicas.generate(ids, p, n -> { }), prompts, tok, rewards, cfg);
            this.remote = cfg.rollout().remote() ? klrl.rollout.remote.RemoteRollout.connect(cfg.rollout(), tok.eosIds(), log) : null;
            if (resume != null) {
                restore(Checkpoints.resolve(resume, log));
            }
            Json.writeAtomically(out.resolve("config.yaml"), ConfigLoader.toYaml(cfg));
        } catch (IOException | RuntimeException | Error e) {
            if (made != null) {
                made.close();
            }
            lock.close(); // a trainer that failed to start holds nothing
            throw e;
        }
    }

    /**
     * train.parallel for the devices of model.device: data parallelism ("data", or "auto" when the
     * memory plan says a replica fits one GPU; on CPU devices, with the host's memory not bounded here,
     * it does), else layer placement. Says which.
     */
    private static boolean dataParallel(TrainConfig cfg, ModelConfig mc, List<Device> devices, long deviceBytes,
                                        Consumer<String> log) {
        if (devices.size() == 1) {
            return false;
        }
        String mode = cfg.train().parallel();
        boolean gpu = devices.get(0).isGpu();
        MemoryPlan.Plan replica = MemoryPlan.plan(cfg, mc, devices.size(), gpu ? deviceBytes / MemoryPlan.GB : 1e12, true);
        boolean data = MemoryPlan.dataParallel(cfg, replica);
        String why = mode.equals("auto") ? String.format(java.util.Locale.ROOT, " (train.parallel: auto; a replica needs about"
                + " %.1f GiB of %.1f GiB per device)", replica.totalGb(), deviceBytes / MemoryPlan.GB) : " (train.parallel: " + mode + ")";
        if (!data && cfg.model().critic().equals("separate")) {
            throw new klrl.util.UserError("config: model.critic: separate needs a replica per device (train.parallel: data);"
                    + " with layers over " + devices + " use model.critic: head");
        }
        log.accept((data ? "data parallel: a replica on each of " : "layer placement: the decoder's layers over ") + devices + why);
        return data;
    }

    private void logDevices(DataType dtype, Consumer<String> log) {
        if (placement.stages() > 1) {
            log.accept("layers per device " + placement.devices() + ": " + java.util.Arrays.toString(placement.layerCounts()));
        }
        if (!placement.output().isGpu()) {
            log.accept("MKL kernels: " + Runtime.mklKernels());
        } else if (dtype == DataType.FLOAT32) {
            log.accept(Runtime.tf32() ? "fp32 matmuls on TF32 tensor cores (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1)"
                    : "fp32 matmuls in full IEEE fp32 (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 at launch selects TF32)");
        }
    }

    /** The training set, and the eval sets into {@link #evalSets}; every prompt is rendered now, so a bad row fails at start. */
    private List<Example> loadData() {
        var d = cfg.data();
        List<Example> train = Dataset.load(d.train() != null ? d.train() : Dataset.BUNDLED_TRAIN, d.promptField(), d.answerField());
        for (String e : (d.eval() != null ? d.eval() : Dataset.BUNDLED_TEST).split(",")) {
            if (!e.isBlank()) {
                List<Example> ex = Dataset.load(e.strip(), d.promptField(), d.answerField());
                evalSets.put(Path.of(e.strip().replace("bundled:", "")).getFileName().toString().replace(".jsonl", ""),
                        ex.subList(0, Math.min(ex.size(), cfg.eval().maxExamples())));
            }
        }
        train.forEach(prompts::ids);
        evalSets.values().forEach(l -> l.forEach(prompts::ids));
        return train;
    }

    /** Asks the loop to checkpoint and return after the current step (SIGTERM). */
    public void requestStop() {
        stop.set(true);
    }

    public void run(Consumer<String> console) throws IOException {
        long maxSteps = cfg.train().maxSteps();
        try (MetricsLog metrics = new MetricsLog(out.resolve("metrics.jsonl"), startStep > 0 ? startStep : -1, true);
             MetricsLog samples = new MetricsLog(out.resolve("samples.jsonl"), startStep > 0 ? startStep : -1)) {
            samplesLog = samples;
            if (cfg.eval().beforeStart() && startStep == 0) {
                evaluate(0, metrics, console);
            }
            Progress run = Progress.start("train", maxSteps, "steps", startStep);
            for (long step = startStep; step < maxSteps && !stop.get(); step++) {
                StepMetrics m;
                try {
                    m = step(step);
                } catch (klrl.rollout.remote.ServersUnavailable e) {
                    // nothing of this step has changed the trainer yet: the checkpoint is of the steps done
                    throw new klrl.util.UserError(e.getMessage() + "; stopped at step " + (step + 1) + ", checkpoint " + save(step));
                }
                run.step(1);
                metrics.write(m.asMap());
                console.accept(String.format("step %d/%d  reward %.3f  acc %.3f  kl_k1 %.4f  kl_k3 %.4f  len %.1f  %.2fs",
                        step + 1, maxSteps, m.get("reward_mean"), m.get("accuracy"), m.get("kl_k1"), m.get("kl_k3"),
                        m.get("response_length"), m.get("time_step")));
                boolean last = step + 1 == maxSteps;
                if (cfg.eval().every() > 0 && ((step + 1) % cfg.eval().every() == 0) || last) {
                    evaluate(step + 1, metrics, console);
                }
                if ((cfg.checkpoint().every() > 0 && (step + 1) % cfg.checkpoint().every() == 0) || last || stop.get()) {
                    console.accept("checkpoint " + save(step + 1));
                }
            }
            run.close();
        }
    }

    /** One RL step; returns its line of metrics. */
    StepMetrics step(long step) {
        long t0 = System.nanoTime();
        StepMetrics m = new StepMetrics(step + 1);
        var rc = cfg.rollout();
        // 1. Rollout: n samples per prompt from the current policy (on this process's replicas, or on the
        //    rollout servers), with their behaviour log-probs (the sampler's, or recomputed here).
        List<Example> exs = schedule.batchAt(step);
        long tr = System.nanoTime();
        List<Sample> samples = rollout(exs, step);
        if (remote != null || rc.recomputeLogprobs()) {
            samples = recomputeLogprobs(samples, m);
        }
        if (remote != null) {
            var pool = remote.pool();
            m.put("rollout_retries", pool.takeRetries()).put("rollout_servers_usable", pool.usable());
            m.put("weight_version", remote.current().version()).put("time_weight_sync", remote.takeSyncSeconds());
        }
        double secRollout = seconds(tr);
        releaseCachedGpuMemory(); // the KV cache's blocks go back before the update's activations
        // 2. Reward: the verifier scores every response against its prompt's gold (worker threads).
        long tw = System.nanoTime();
        List<RewardPool.Scored> scores = evaluator.score(exs, samples);
        double secReward = seconds(tw);
        m.rollout(samples, scores);
        logSamples(step, exs, samples, scores);
        // 3. Off-policy lag K: train on the rollout made K policy versions ago (its log-probs are the behaviour policy's).
        lagQueue.addLast(new Rollout(step, samples, scores));
        if (lagQueue.size() <= cfg.algorithm().offPolicyLag()) {
            m.put("time_rollout", secRollout).put("time_reward", secReward).put("time_step", seconds(t0));
            m.put("kl_k1", 0.0).put("kl_k3", 0.0).put("kl_forward", 0.0);
            return m.put("kl_coef", kl.value()).put("lr", lr.at((int) opt.steps())); // still filling the queue
        }
        Rollout ro = lagQueue.removeFirst();
        SequenceBatch all = SequenceBatch.of(ro.samples().stream().map(Sample::promptIds).toList(),
                ro.samples().stream().map(Sample::responseIds).toList(), (int) tok.padId());
        float[] oldLogp = behaviourLogprobs(ro.samples(), all.r());
        float temperature = (float) rc.temperature();
        // 4. Reference: log π_ref per token; PPO's old values; the exact KL when "full" shapes the reward.
        long tref = System.nanoTime();
        boolean exactKl = lossCfg.klEstimator().needsFullLogits() && lossCfg.klPlacement().shapesRewards();
        ReferencePass.Out ref = ReferencePass.run(replicas, all, cfg.train().microBatchSize(), temperature, exactKl);
        double secRef = seconds(tref);
        // 5. Shaping: per-token KL → token rewards (KL in the reward) → advantages; the controller follows the KL.
        Shaping.Out shaped = Shaping.apply(all, oldLogp, ref, ro.scores().stream().mapToDouble(RewardPool.Scored::reward).toArray(),
                ro.samples().stream().mapToInt(Sample::promptIndex).toArray(), lossCfg.withKlCoef(kl.value()), advantage, advCfg, root);
        m.putAll(shaped.klMetrics());
        kl.update(shaped.meanKl(), all.rows());
        // 6. Policy update: ppo_epochs × mini-batches (whole prompts) × micro-batches, backward, clip, optimizer.
        long tu = System.nanoTime();
        PolicyUpdate.Out upd = update.run(new PolicyUpdate.Inputs(all, oldLogp, ref.refLogp(), shaped.advantages(),
                shaped.returns(), ref.oldValues(), cfg.train().miniBatchSize() * rc.n(), temperature, ro.step()),
                lossCfg.withKlCoef(kl.value()));
        releaseCachedGpuMemory();
        // 7. Metrics: the update's, timings, and the leak watch (both stay flat when every scope closes).
        m.putAll(upd.lossMetrics()).put("entropy", upd.entropy()).put("kl_coef", kl.value()).put("grad_norm", upd.gradNorm());
        m.put("skipped_updates", upd.skipped());
        if (cfg.train().gradVar()) {
            m.put("grad_var", upd.gradVar());
        }
        if (opt.lossScale() != 1) {
            m.put("loss_scale", opt.lossScale());
        }
        m.put("lr", lr.at((int) opt.steps() - 1)).put("time_reference", secRef).put("time_update", seconds(tu));
        double[] sync = replicas.takeTimes();
        if (replicas.size() > 1) { // inside time_update: gradients onto the master, weights back to the replicas
            m.put("time_grad_reduce", sync[0]).put("time_param_sync", sync[1]);
        }
        m.put("time_rollout", secRollout).put("time_reward", secReward);
        double secs = seconds(t0);
        long tokens = samples.stream().mapToLong(s -> s.promptIds().length + s.responseIds().length).sum();
        m.put("tokens_per_s", tokens / secs).put("time_step", secs).put("live_arrays", replicas.liveArrays());
        long rss = residentMb();
        return rss >= 0 ? m.put("rss_mb", rss) : m;
    }

    /** The rollout of step s (its prompts from the schedule). */
    List<Sample> rollout(long step) {
        return rollout(schedule.batchAt(step), step);
    }

    /** n samples for each prompt of step s, decoded in as many sequences at once as the KV-cache budget allows. */
    private List<Sample> rollout(List<Example> exs, long step) {
        var rc = cfg.rollout();
        List<long[]> ids = exs.stream().map(prompts::ids).toList();
        SamplingParams sp = new SamplingParams(rc.maxNewTokens(), rc.temperature(), rc.topP(), rc.topK(), rc.n(), rc.stop(),
                schedule.seed(step, PromptSchedule.ROLLOUT));
        try (Progress p = Progress.start("rollout", (long) exs.size() * rc.n(), "seq")) {
            if (remote == null) {
                return replicas.generate(ids, sp, p::step);
            }
            // the servers serve the weights of this step (version = steps done) before they sample
            remote.publish(step, nets.lora(), dir -> klrl.checkpoint.Checkpoints.writeModel(dir, nets.policyWeights(), nets.lora(),
                    adapterConfig(), modelDir));
            return remote.generate(ids, sp, p::step);
        }
    }

    /**
     * The samples with the behaviour log-probs recomputed by this trainer's policy (the weights they
     * were sampled with), as verl does; how far the sampler's own are from them goes to the metrics —
     * the signal that sampler and trainer disagree (dtype, kernels, stale weights).
     */
    private List<Sample> recomputeLogprobs(List<Sample> samples, StepMetrics m) {
        SequenceBatch all = SequenceBatch.of(samples.stream().map(Sample::promptIds).toList(),
                samples.stream().map(Sample::responseIds).toList(), (int) tok.padId());
        float[] mine = ReferencePass.policyLogp(replicas, all, cfg.train().microBatchSize(), (float) cfg.rollout().temperature());
        double sum = 0, max = 0;
        long tokens = 0;
        List<Sample> out = new java.util.ArrayList<>(samples.size());
        for (int i = 0; i < samples.size(); i++) {
            Sample s = samples.get(i);
            float[] lp = java.util.Arrays.copyOfRange(mine, i * all.r(), i * all.r() + s.responseIds().length);
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

    /** Every train.samples_every steps: what the model wrote for the first prompts, with reward, answer and gold. */
    private void logSamples(long step, List<Example> exs, List<Sample> samples, List<RewardPool.Scored> scores) {
        int every = cfg.train().samplesEvery();
        if (samplesLog == null || every == 0 || (step + 1) % every != 0) {
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
            line.put("gold", ex.gold());
            line.put("finish_reason", s.finishReason());
            samplesLog.write(line);
        }
    }

    private static double seconds(long since) {
        return (System.nanoTime() - since) / 1e9;
    }

    /** The rollout's per-token log-probs, laid out [rows·R] with zeros on padding. */
    private static float[] behaviourLogprobs(List<Sample> samples, int r) {
        float[] lp = new float[samples.size() * r];
        for (int i = 0; i < samples.size(); i++) {
            float[] s = samples.get(i).logprobs();
            System.arraycopy(s, 0, lp, i * r, s.length);
        }
        return lp;
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

    /**
     * Sequences decoded at once: rollout.kv_cache_gb per device, or, when it is 0 on GPUs, what each GPU
     * has free up to rollout.gpu_memory_utilization of its memory (read before every rollout, since the
     * update before it held activations); no cap on CPU.
     */
    static int kvRows(TrainConfig cfg, klrl.model.Decoder policy) {
        Placement placement = policy.placement();
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
        return RolloutEngine.rowsThatFit(perSeq, budget);
    }

    /** Returns PyTorch's cached, unused GPU blocks so the next phase (and the free-memory reading) sees them. */
    private void releaseCachedGpuMemory() {
        if (placement.output().isGpu()) {
            ai.djl.pytorch.jni.JniUtils.emptyCudaCache();
        }
    }

    /** The largest difference between a replica's trainable tensors and the master's (0: in sync). */
    double replicaDifference() {
        return replicas.maxDifference();
    }

    /** Greedy accuracy and mean@k on each held-out set, one metrics line per set. */
    public void evaluate(long step, MetricsLog metrics, Consumer<String> console) {
        evaluator.evaluateAll(evalSets, step, schedule.seed(step, PromptSchedule.EVAL), metrics, console);
    }

    public Map<String, Object> evaluate(List<Example> exs, long seed) {
        return evaluator.evaluate(exs, seed);
    }

    /** Writes a checkpoint after {@code stepsDone} steps. */
    public Path save(long stepsDone) throws IOException {
        var state = new Checkpoints.State(stepsDone, opt.steps(), kl.value(), Map.of("loss_scale", opt.lossScale()));
        return Checkpoints.save(out, new Checkpoints.Contents(state, modelDir, nets.policyWeights(), nets.lora(), adapterConfig(),
                nets.ppo() ? nets.criticState() : null, opt.stateTensors()), cfg.checkpoint().keep());
    }

    /** PEFT's adapter_config.json of this run's LoRA (empty with full fine-tuning), as checkpoints and rollout servers get it. */
    private Map<String, Object> adapterConfig() {
        var l = cfg.model().lora();
        return nets.lora() ? Lora.adapterConfig(l.rank(), l.alpha(), l.dropout(), l.targetModules(), modelDir) : Map.of();
    }

    private void restore(Path ckpt) {
        var st = Checkpoints.state(ckpt);
        try (NDManager m = root.newSubManager()) {
            if (nets.lora()) {
                SafeTensors.copyInto(nets.policyWeights(), Checkpoints.readAll(ckpt.resolve("adapter_model.safetensors"), m),
                        ckpt + "/adapter_model.safetensors");
            } else {
                Map<String, NDArray> saved = new LinkedHashMap<>();
                SafeTensors.index(ckpt).forEach((k, e) -> saved.put(k, SafeTensors.load(e, m, DataType.FLOAT32)));
                SafeTensors.copyInto(nets.policyWeights(), saved, ckpt.toString());
            }
            if (nets.ppo()) {
                SafeTensors.copyInto(nets.criticState(), Checkpoints.readAll(ckpt.resolve("value_head.safetensors"), m),
                        ckpt + "/value_head.safetensors");
            }
            opt.restore(Checkpoints.readAll(ckpt.resolve("optimizer.safetensors"), m), st.get("optimizer_steps").asLong(),
                    st.path("extra").path("loss_scale").asDouble(1));
        }
        replicas.broadcast(); // the replicas continue from the restored weights too
        kl.restore(st.get("kl_coef").asDouble());
        startStep = st.get("step").asLong();
    }

    @Override
    public void close() {
        if (remote != null) {
            remote.close();
        }
        rewards.close();
        tok.close();
        opt.close();
        replicas.close();
        root.close();
        try {
            lock.close();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }
}
