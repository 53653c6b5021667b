package klrl.train;

import ai.djl.ndarray.NDManager;
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
import klrl.loss.LossConfig;
import klrl.loss.LossTerm;
import klrl.metrics.MetricsLog;
import klrl.model.Placement;
import klrl.model.Tokenizer;
import klrl.optim.AdamW;
import klrl.optim.LrSchedule;
import klrl.reward.RewardPool;
import klrl.rollout.Sample;
import klrl.util.Json;
import klrl.util.Progress;

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
    /** The rollout stage: this process's replicas, or SGLang/vLLM servers (rollout.engine). */
    private final Rollouts rollouts;
    private final AtomicBoolean stop = new AtomicBoolean();
    private final ArrayDeque<Rollout> lagQueue = new ArrayDeque<>();
    private MetricsLog samplesLog; // open while run() runs
    private long startStep;

    /** One step's sampled and scored data, kept whole for the off-policy lag queue. */
    private record Rollout(long step, List<Sample> samples, List<RewardPool.Scored> scores) {}

    public Trainer(TrainConfig cfg, Path resume, Consumer<String> log) throws IOException {
        this(cfg, resume, false, log);
    }

    /** @param overwrite a run already in output_dir is replaced (else starting there without {@code resume} is refused) */
    public Trainer(TrainConfig cfg, Path resume, boolean overwrite, Consumer<String> log) throws IOException {
        this.cfg = cfg;
        this.out = Path.of(cfg.outputDir());
        Files.createDirectories(out);
        this.lock = OutputLock.acquire(out);
        Replicas made = null;
        Rollouts madeRollouts = null;
        try {
            RunFolder.claim(out, resume, overwrite); // one run per folder: never overwritten or mixed
            this.modelDir = cfg.model().path() != null ? Path.of(cfg.model().path()) : TinyDefault.ensure(log);
            this.tok = Tokenizer.load(modelDir); // closed with the trainer; on a failed start left to the collector
            // The networks on model.device: one replica, layers placed over several devices, or a replica per device.
            made = Replicas.open(cfg, modelDir, tok, log);
            this.replicas = made;
            this.nets = replicas.master().nets();
            this.root = replicas.master().root();
            this.placement = replicas.placement();
            var o = cfg.optim();
            var a = cfg.algorithm();
            this.opt = new AdamW(nets.trainable, nets.lrScale, new AdamW.Hyper(o.beta1(), o.beta2(), o.eps(), o.weightDecay()), root);
            int updatesPerStep = a.ppoEpochs() * (cfg.train().batchSize() / cfg.train().miniBatchSize());
            this.lr = new LrSchedule(o.lr(), o.warmupSteps() * updatesPerStep, o.schedule(), o.minLrRatio(),
                    cfg.train().maxSteps() * updatesPerStep);
            this.kl = new KlController(cfg.kl().coef(), cfg.kl().target(), cfg.kl().horizon());
            this.lossCfg = PolicyUpdate.lossConfig(cfg, kl.value());
            this.update = new PolicyUpdate(replicas, opt, lr, LossTerm.forConfig(lossCfg, nets.ppo()), a.ppoEpochs(),
                    ReferencePass.Sizes.of(cfg), cfg.train().checkpointLayers(), placement.stages() > 1, o.gradClip(),
                    cfg.train().maxSkippedUpdates(), cfg.train().gradVar());
            this.advantage = AdvantageEstimator.parse(a.resolvedAdvantage());
            this.advCfg = new AdvantageEstimator.Config(a.normAdvByStd(), a.gamma(), a.lambda(), 1e-6);
            this.rewards = Evaluator.rewardPool(cfg);
            this.prompts = new Prompts(tok, cfg.data().promptFormat());
            this.schedule = new PromptSchedule(loadData(), cfg.train().batchSize(), cfg.train().seed());
            this.evaluator = new Evaluator((ids, p) -> replicas.generate(ids, p, n -> { }), prompts, tok, rewards, cfg);
            madeRollouts = new Rollouts(cfg, replicas, prompts, schedule, tok, modelDir, log);
            this.rollouts = madeRollouts;
            if (resume != null) {
                restore(Checkpoints.resolve(resume, log));
            }
            Json.writeAtomically(out.resolve("config.yaml"), ConfigLoader.toYaml(cfg));
        } catch (IOException | RuntimeException | Error e) {
            if (madeRollouts != null) {
                madeRollouts.close();
            }
            if (made != null) {
                made.close();
            }
            lock.close(); // a trainer that failed to start holds nothing
            throw e;
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
        // 1. Rollout: n samples per prompt from the current policy (on this process's replicas, or on the
        //    rollout servers), with their behaviour log-probs (the sampler's, or recomputed here).
        List<Example> exs = schedule.batchAt(step);
        long tr = System.nanoTime();
        List<Sample> samples = rollouts.run(exs, step, m);
        double secRollout = seconds(tr);
        releaseCachedGpuMemory(); // the KV cache's blocks go back before the update's activations
        // 2. Reward: the verifier scores every response against its prompt's gold (worker threads).
        long tw = System.nanoTime();
        List<RewardPool.Scored> scores = evaluator.score(exs, samples);
        m.rollout(samples, scores).put("time_rollout", secRollout).put("time_reward", seconds(tw));
        logSamples(step, exs, samples, scores);
        // 3. Off-policy lag K: train on the rollout made K policy versions ago (its log-probs are the behaviour policy's).
        lagQueue.addLast(new Rollout(step, samples, scores));
        if (lagQueue.size() <= cfg.algorithm().offPolicyLag()) {
            m.put("time_step", seconds(t0)).put("kl_k1", 0.0).put("kl_k3", 0.0).put("kl_forward", 0.0);
            return m.put("kl_coef", kl.value()).put("lr", lr.at((int) opt.steps())); // still filling the queue
        }
        Rollout ro = lagQueue.removeFirst();
        SequenceBatch all = SequenceBatch.of(ro.samples(), (int) tok.padId());
        float[] oldLogp = all.perToken(ro.samples().stream().map(Sample::logprobs).toList());
        float temperature = (float) cfg.rollout().temperature();
        // 4. Reference: log π_ref per token; PPO's old values; the exact KL when "full" shapes the reward.
        long tref = System.nanoTime();
        boolean exactKl = lossCfg.klEstimator().needsFullLogits() && lossCfg.klPlacement().shapesRewards();
        ReferencePass.Out ref = ReferencePass.run(replicas, all, ReferencePass.Sizes.of(cfg), temperature, exactKl);
        m.put("time_reference", seconds(tref));
        // 5. Shaping: per-token KL → token rewards (KL in the reward) → advantages; the controller follows the KL.
        Shaping.Out shaped = Shaping.apply(all, oldLogp, ref, ro.scores().stream().mapToDouble(RewardPool.Scored::reward).toArray(),
                ro.samples().stream().mapToInt(Sample::promptIndex).toArray(), lossCfg.withKlCoef(kl.value()), advantage, advCfg, root);
        m.putAll(shaped.klMetrics());
        kl.update(shaped.meanKl(), all.rows());
        // 6. Policy update: ppo_epochs × mini-batches (whole prompts) × micro-batches, backward, clip, optimizer.
        long tu = System.nanoTime();
        PolicyUpdate.Out upd = update.run(new PolicyUpdate.Inputs(all, oldLogp, ref.refLogp(), shaped.advantages(),
                shaped.returns(), ref.oldValues(), cfg.train().miniBatchSize() * cfg.rollout().n(), temperature, ro.step()),
                lossCfg.withKlCoef(kl.value()));
        releaseCachedGpuMemory();
        // 7. Metrics: the update's, timings, and the leak watch (both stay flat when every scope closes).
        m.update(upd, cfg.train().gradVar(), kl.value(), opt.lossScale()).put("lr", lr.at((int) opt.steps() - 1));
        m.put("time_update", seconds(tu));
        double[] sync = replicas.takeTimes();
        if (replicas.size() > 1) { // inside time_update: gradients onto the master, weights back to the replicas
            m.put("time_grad_reduce", sync[0]).put("time_param_sync", sync[1]);
        }
        double secs = seconds(t0);
        long tokens = samples.stream().mapToLong(s -> s.promptIds().length + s.responseIds().length).sum();
        return m.put("tokens_per_s", tokens / secs).put("time_step", secs).put("live_arrays", replicas.liveArrays()).memory();
    }

    /** The rollout of step s (its prompts from the schedule). */
    List<Sample> rollout(long step) {
        return rollouts.generate(schedule.batchAt(step), step);
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
        return Checkpoints.save(out, new Checkpoints.Contents(state, modelDir, nets.policyWeights(), nets.lora(), nets.adapterConfig(cfg, modelDir),
                nets.ppo() ? nets.criticState() : null, opt.stateTensors()), cfg.checkpoint().keep());
    }

    private void restore(Path ckpt) {
        var st = Checkpoints.state(ckpt);
        try (NDManager m = root.newSubManager()) {
            nets.restore(ckpt, m);
            opt.restore(Checkpoints.readAll(ckpt.resolve("optimizer.safetensors"), m), st.get("optimizer_steps").asLong(),
                    st.path("extra").path("loss_scale").asDouble(1));
        }
        replicas.broadcast(); // the replicas continue from the restored weights too
        kl.restore(st.get("kl_coef").asDouble());
        startStep = st.get("step").asLong();
    }

    @Override
    public void close() {
        rollouts.close();
        rewards.close();
        tok.close();
        opt.close();
        replicas.close(); // and the master's root manager
        try {
            lock.close();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }
}
