package klrl.train;

import ai.djl.ndarray.NDManager;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import klrl.advantage.AdvantageEstimator;
import klrl.checkpoint.Checkpoints;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
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
import klrl.parallel.Replicas;
import klrl.reward.RewardPool;
import klrl.rollout.Sample;
import klrl.run.OutputLock;
import klrl.run.RunData;
import klrl.run.RunFolder;
import klrl.run.TinyDefault;
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
    private final LagQueue lag;
    private MetricsLog samplesLog; // open while run() runs
    private long startStep;

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
            RunData data = new RunData(cfg); // data first: a bad file or field fails before any model loads (or any file goes)
            RunFolder.check(out, resume, overwrite); // one run per folder: refused before the model loads
            this.modelDir = cfg.model().path() != null ? Path.of(cfg.model().path()) : TinyDefault.ensure(log);
            this.tok = Tokenizer.load(modelDir); // closed with the trainer; on a failed start left to the collector
            this.prompts = new Prompts(tok, cfg.data().promptFormat());
            data.render(prompts).forEach(log); // what was read and what the model will see, before the weights load
            evalSets.putAll(data.evalSets());
            // The networks on model.device: one replica, layers placed over several devices, or a replica per device.
            made = Replicas.open(cfg, modelDir, tok, log);
            RunFolder.claim(out, resume, overwrite); // after every check that can refuse the run: a refused one removes nothing
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
            this.advCfg = AdvantageEstimator.Config.of(a.resolvedScaleRewards(), a.gamma(), a.lambda());
            this.rewards = Evaluator.rewardPool(cfg);
            this.schedule = new PromptSchedule(data.train.examples(), cfg.train().batchSize(), cfg.train().seed());
            this.evaluator = new Evaluator((ids, p) -> replicas.generate(ids, p, n -> { }), prompts, tok, rewards, cfg);
            madeRollouts = new Rollouts(cfg, replicas, prompts, schedule, tok, modelDir, evaluator::score, log);
            this.rollouts = madeRollouts;
            this.lag = new LagQueue(a.offPolicyLag());
            if (resume != null) {
                restore(Checkpoints.resolve(resume, log), log);
            }
            // paths absolute: --resume RUN reads the same files from any working folder
            Json.writeAtomically(out.resolve("config.yaml"), ConfigLoader.toYaml(ConfigLoader.absolutePaths(cfg)));
        } catch (IOException | RuntimeException | Error e) {
            if (madeRollouts != null) {
                madeRollouts.close();
            }
            if (made != null && (madeRollouts == null || madeRollouts.stopped())) {
                made.close();
            }
            lock.close(); // a trainer that failed to start holds nothing
            throw e;
        }
    }

    /** Asks the loop to checkpoint and return after the current step (SIGTERM). */
    public void requestStop() {
        stop.set(true);
    }

    public void run(Consumer<String> console) throws IOException {
        long maxSteps = cfg.train().maxSteps();
        try (MetricsLog metrics = new MetricsLog(out.resolve("metrics.jsonl"), startStep > 0 ? startStep : -1,
                klrl.metrics.PeerNames.of(cfg.metrics().names()));
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
        // 1. Rollout of this step: n samples per prompt from the policy as it is now (version max(0, t − K)),
        //    behaviour log-probs, the verifier's scores. With rollout.overlap it runs while 2–7 do.
        Rollouts.Pending next = startRollout(step);
        // 2. Off-policy lag K: train on the rollout of step t − K (none while the first K fill the queue).
        Rollouts.Generated ro = lag.take(next);
        if (ro != null) {
            train(ro, step, m);
        } else {
            m.put("kl_k1", 0.0).put("kl_k3", 0.0).put("kl_forward", 0.0).put("kl_coef", kl.value()).put("lr", lr.at((int) opt.steps()));
        }
        // 8. This step's rollout, waited for (overlapped: only what generation took beyond the update), into the queue.
        long tw = System.nanoTime();
        Rollouts.Generated g = awaitRollout(next, step);
        m.put("time_overlap_wait", seconds(tw) + (cfg.rollout().overlap() ? 0 : (double) g.metrics().get("time_rollout")
                + (double) g.metrics().get("time_reward"))).putAll(g.metrics()).rollout(g.samples(), g.scores());
        releaseCachedGpuMemory(); // the KV cache's blocks go back before the next update's activations
        evaluator.logSamples(samplesLog, step, g.prompts(), g.samples(), g.scores());
        lag.add(g);
        double secs = seconds(t0);
        long tokens = g.samples().stream().mapToLong(s -> s.promptIds().length + s.responseIds().length).sum();
        return m.put("tokens_per_s", tokens / secs).put("time_step", secs).put("live_arrays", replicas.liveArrays() + rollouts.liveArrays())
                .memory();
    }

    /** Steps 3–7 on rollout {@code ro}: reference pass, shaping, rollout correction, the policy update, their metrics into {@code m}. */
    private void train(Rollouts.Generated ro, long step, StepMetrics m) {
        m.put("rollout_policy_version", ro.policyVersion()).put("policy_version_lag", lag.versionAt(step) - ro.policyVersion());
        SequenceBatch all = SequenceBatch.of(ro.samples(), (int) tok.padId());
        float[] oldLogp = all.perToken(ro.samples().stream().map(Sample::logprobs).toList());
        float temperature = (float) cfg.rollout().temperature();
        // 3. Reference: log π_ref per token; PPO's old values; the exact KL when "full" shapes the reward.
        long tref = System.nanoTime();
        boolean exactKl = lossCfg.klEstimator().needsFullLogits() && lossCfg.klPlacement().shapesRewards();
        ReferencePass.Out ref = ReferencePass.run(replicas, all, ReferencePass.Sizes.of(cfg), temperature, exactKl);
        m.put("time_reference", seconds(tref));
        // 4. Shaping: per-token KL → token rewards (KL in the reward) → advantages; the controller follows the KL.
        Shaping.Out shaped = Shaping.apply(all, oldLogp, ref, ro.scores().stream().mapToDouble(RewardPool.Scored::reward).toArray(),
                ro.samples().stream().mapToInt(Sample::promptIndex).toArray(), lossCfg.withKlCoef(kl.value()), advantage, advCfg, root);
        m.putAll(shaped.klMetrics());
        kl.update(shaped.meanKl(), all.rows());
        SequenceBatch trained = cfg.algorithm().maskTruncated() ? Shaping.maskTruncated(all, ro.samples()) : all;
        // 5. Rollout correction: weights π_old/μ when the sampler μ that drew the tokens is not π_old (null without one).
        float[] isWeights = Shaping.rolloutWeights(trained, oldLogp, ro.samples(), cfg.rolloutCorrection(), m);
        // 6. Policy update: ppo_epochs × mini-batches (whole prompts) × micro-batches, backward, clip, optimizer.
        long tu = System.nanoTime();
        PolicyUpdate.Out upd = update.run(new PolicyUpdate.Inputs(trained, oldLogp, ref.refLogp(), shaped.advantages(),
                shaped.returns(), ref.oldValues(), cfg.train().miniBatchSize() * cfg.rollout().n(), temperature, ro.step(),
                isWeights), lossCfg.withKlCoef(kl.value()));
        releaseCachedGpuMemory();
        // 7. Metrics: the update's, timings (gradient reduce and weight copies inside time_update with several replicas;
        //    how busy a pipeline's stages were).
        m.update(upd, cfg.train().gradVar(), kl.value(), opt.lossScale()).put("lr", lr.at((int) opt.steps() - 1));
        m.put("time_update", seconds(tu));
        m.putAll(replicas.takeTimes());
    }

    /**
     * The rollout started this step. Overlapped, it can fail after this step's update has changed the
     * weights: then no checkpoint can hold both, and the run stops at the latest one.
     */
    private Rollouts.Generated awaitRollout(Rollouts.Pending next, long step) {
        try {
            return next.await();
        } catch (klrl.rollout.remote.ServersUnavailable e) {
            if (!cfg.rollout().overlap() || lag.versionAt(step) == lag.versionAt(step + 1)) {
                throw e; // nothing of this step has changed the trainer yet
            }
            throw new klrl.util.UserError(e.getMessage() + "; stopped at step " + (step + 1) + ", whose update had run while"
                    + " its rollout failed: resume from the latest checkpoint in " + out.resolve("checkpoints"));
        }
    }

    /** The rollout of step s (its prompts from the schedule). */
    List<Sample> rollout(long step) {
        return rollouts.generate(schedule.batchAt(step), step);
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

    /** Starts step {@code step}'s rollout (overlapped: in its own thread) and returns it. */
    Rollouts.Pending startRollout(long step) {
        return rollouts.start(schedule.batchAt(step), step, lag.versionAt(step));
    }

    /** Whether a rollout is still being generated (an overlapped one, after a failed step or before close). */
    boolean rolloutInFlight() {
        return rollouts.inFlight();
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
                nets.ppo() ? nets.criticState() : null, opt.stateTensors(), Map.of(LagQueue.FILE, lag.state())), cfg.checkpoint().keep());
    }

    private void restore(Path ckpt, Consumer<String> log) {
        var st = Checkpoints.state(ckpt);
        try (NDManager m = root.newSubManager()) {
            nets.restore(ckpt, m);
            opt.restore(Checkpoints.readAll(ckpt.resolve("optimizer.safetensors"), m), st.get("optimizer_steps").asLong(),
                    st.path("extra").path("loss_scale").asDouble(1));
        }
        replicas.broadcast(); // the replicas continue from the restored weights too
        kl.restore(st.get("kl_coef").asDouble());
        startStep = st.get("step").asLong();
        lag.restore(ckpt, startStep, cfg.rolloutCorrection().active(), log); // the resumed run trains on what the uninterrupted one would
    }

    @Override
    public void close() {
        try (OutputLock folder = lock) { // released however the closing below ends
            rollouts.close(); // cancels a rollout under way and waits for it: nothing below is freed while it runs
            rewards.close();
            if (rollouts.stopped()) { // else it still runs after the wait: its weights are left to the process's exit
                tok.close();
                opt.close();
                replicas.close(); // and the master's root manager
            }
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }
}
