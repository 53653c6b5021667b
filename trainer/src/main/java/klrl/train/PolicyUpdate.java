package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import klrl.loss.LossConfig;
import klrl.loss.LossTerm;
import klrl.loss.TokenBatch;
import klrl.optim.AdamW;
import klrl.optim.LrSchedule;
import klrl.parallel.GradSpread;
import klrl.parallel.Pipeline;
import klrl.parallel.Replicas;
import klrl.parallel.StagedBackward;
import klrl.util.UserError;

/**
 * The policy update of one step: ppo_epochs passes over mini-batches (groups of whole prompts), each
 * mini-batch accumulated over micro-batches and followed by one optimizer step. With data-parallel
 * replicas the micro-batches are dealt over them in rounds, their gradients added onto the master's
 * in micro-batch order (the sum one device forms) and the updated tensors copied back after the step. A micro-batch is
 * differentiated end to end, or stage by stage with per-layer recomputation when
 * train.checkpoint_layers > 0 or the layers are placed over several devices; placed layers run the
 * mini-batch's micro-batches as a pipeline ({@link Pipeline}).
 */
final class PolicyUpdate {
    private final Replicas reps;
    private final AdamW opt;
    private final LrSchedule lr;
    private final List<LossTerm> terms;
    private final int epochs, checkpointLayers, maxSkipped;
    private final ReferencePass.Sizes micro;
    private final boolean staged;
    private final double gradClip;
    /** Per-micro-batch gradient spread (train.grad_var), one tracker per replica, or null. */
    private final GradSpread[] spreads;
    /** The master's policy tensors (the critic's excluded): what grad_var measures. */
    private final Map<String, NDArray> policyParams;

    /**
     * Everything the update reads per token ([rows·R] arrays; PPO's two value arrays null otherwise;
     * the rollout correction's weights null without one).
     */
    record Inputs(SequenceBatch all, float[] oldLogp, float[] refLogp, float[] advantages, float[] returns,
                  float[] oldValues, int miniRows, float temperature, long step, float[] isWeights) {}

    /**
     * Loss metrics averaged over the passes, the mean entropy per token, the mean gradient norm over the
     * updates applied, how many updates were skipped for a non-finite loss or gradient, and the mean
     * grad_var over the mini-batches (NaN unless train.grad_var).
     */
    record Out(Map<String, Double> lossMetrics, double entropy, double gradNorm, int skipped, double gradVar,
               double paddingFraction, int microBatches) {}

    PolicyUpdate(Replicas reps, AdamW opt, LrSchedule lr, List<LossTerm> terms, int epochs, ReferencePass.Sizes micro,
                 int checkpointLayers,
                 boolean staged, double gradClip, int maxSkipped, boolean gradVar) {
        this.maxSkipped = maxSkipped;
        this.reps = reps;
        this.opt = opt;
        this.lr = lr;
        this.terms = terms;
        this.epochs = epochs;
        this.micro = micro;
        this.checkpointLayers = checkpointLayers;
        this.staged = staged || checkpointLayers > 0;
        this.gradClip = gradClip;
        this.policyParams = policyTensors(reps.master().nets());
        this.spreads = !gradVar ? null : reps.all().stream()
                .map(r -> new GradSpread(policyTensors(r.nets()), r.root())).toArray(GradSpread[]::new);
    }

    /** The loss's settings from the config, at KL coefficient {@code klCoef}. */
    static LossConfig lossConfig(klrl.config.TrainConfig cfg, double klCoef) {
        var a = cfg.algorithm();
        return new LossConfig(klrl.loss.Aggregation.parse(a.lossAggMode()), a.clipRatioLow(), a.clipRatioHigh(), a.clipRatioC(),
                cfg.kl().parsedEstimator(), cfg.kl().parsedPlacement(), klCoef, cfg.kl().safeguards(), a.entropyCoef(),
                a.valueClip(), a.valueCoef(), klrl.loss.PolicyLoss.Kind.parse(a.policyLoss()));
    }

    private static Map<String, NDArray> policyTensors(Policies nets) {
        Map<String, NDArray> p = new LinkedHashMap<>(nets.trainable);
        p.keySet().removeAll(nets.lrScale.keySet()); // the critic's tensors
        return p;
    }

    /** Running sums over the micro-batches of one update. */
    private static final class Sums {
        final Map<String, double[]> loss = new LinkedHashMap<>();
        double entropy, gradNorm, gradVar;
        int updates, skipped, gradVars, microBatches;
        long positions, tokens;
        /** The current mini-batch's first non-finite loss, or null. */
        String nonFiniteLoss;
    }

    /** One micro-batch's loss metrics (weighted by its share of the mini-batch) and entropy sum. */
    private record Micro(Map<String, Double> metrics, double entropy) {}

    Out run(Inputs in, LossConfig lc) {
        reps.all().forEach(r -> r.nets().policy.setTraining(true));
        int n = in.all().rows();
        Sums sums = new Sums();
        for (int epoch = 0; epoch < epochs; epoch++) {
            for (int m0 = 0; m0 < n; m0 += in.miniRows()) {
                miniBatch(in, lc, m0, Math.min(n, m0 + in.miniRows()), sums);
            }
        }
        reps.all().forEach(r -> r.nets().policy.setTraining(false));
        double tokens = 0;
        for (float f : in.all().responseMask()) {
            tokens += f;
        }
        int passes = epochs * ((n + in.miniRows() - 1) / in.miniRows());
        Map<String, Double> loss = new LinkedHashMap<>();
        sums.loss.forEach((key, v) -> loss.put(key, v[0] / passes));
        return new Out(loss, sums.entropy / (tokens * epochs), sums.updates == 0 ? Double.NaN : sums.gradNorm / sums.updates,
                sums.skipped, sums.gradVars == 0 ? Double.NaN : sums.gradVar / sums.gradVars,
                1 - (double) sums.tokens / Math.max(1, sums.positions), sums.microBatches);
    }

    /** Rows [m0, m1): gradients accumulated over micro-batches, then one optimizer step. */
    private void miniBatch(Inputs in, LossConfig lc, int m0, int m1, Sums sums) {
        // aggregation weights over the whole mini-batch (in the step's layout), so micro-batch losses add up to its loss
        int r = in.all().r();
        float[] w = new float[in.all().rows() * r];
        try (NDManager mm = reps.master().root().newSubManager()) {
            System.arraycopy(lc.aggregation().weights(in.all().slice(m0, m1).mask(mm)).toFloatArray(), 0, w, m0 * r, (m1 - m0) * r);
        }
        List<MicroBatch> mbs = micro.plan(in.all(), m0, m1);
        double responseTokens = 0;
        for (MicroBatch mb : mbs) {
            responseTokens += mb.responseTokens();
            sums.positions += mb.positions();
            sums.tokens += mb.tokens();
        }
        sums.microBatches += mbs.size();
        List<Micro> outs = backward(in, lc, mbs, w, Math.max(1, responseTokens));
        // Metrics added up in micro-batch order, as on one device.
        for (Micro o : outs) {
            double total = o.metrics().get("loss_total");
            if (!Double.isFinite(total) && sums.nonFiniteLoss == null) {
                sums.nonFiniteLoss = "loss " + total + " at step " + (in.step() + 1);
            }
            o.metrics().forEach((key, v) -> sums.loss.computeIfAbsent(key, z -> new double[1])[0] += v);
            sums.entropy += o.entropy();
        }
        if (spreads != null) {
            double s = 0;
            for (GradSpread sp : spreads) {
                s += sp.drain();
            }
            double v = GradSpread.value(s, policyParams, outs.size());
            if (Double.isFinite(v)) {
                sums.gradVar += v;
                sums.gradVars++;
            }
        }
        optimizerStep(in, sums);
    }

    /**
     * Forward and backward per micro-batch, in rounds of one per replica (micro-batch k on replica
     * k mod size; longest first, so a round's micro-batches carry alike work); after each round the
     * replicas' gradients join the master's in micro-batch order. Returns the micro-batches' metrics in order.
     */
    private List<Micro> backward(Inputs in, LossConfig lc, List<MicroBatch> mbs, float[] w, double responseTokens) {
        double wSum = sum(w);
        Pipeline pipe = reps.updatePipeline();
        if (pipe != null) { // layers over several devices: the micro-batches flow through them, one forward, one backward
            Policies nets = reps.master().nets();
            boolean full = lc.klEstimator().needsFullLogits();
            return pipe.update(nets.policy, mbs.stream().map(MicroBatch::batch).toList(), reps.master().root(), checkpointLayers,
                    (k, h, mm) -> {
                        MicroBatch mb = mbs.get(k);
                        PolicyForward.Out cur = PolicyForward.head(nets.policy, mb.batch(), mm, h, in.temperature(),
                                ref(nets, mb.batch(), mm, full), true);
                        LossTerm.Out o = loss(nets, in, lc, mb, cur, mb.gather(w), mm);
                        return new Pipeline.Loss<>(scaled(o.loss()), () -> micro(o, cur, mb, mm, mb.responseTokens() / responseTokens));
                    });
        }
        List<Micro> outs = new ArrayList<>();
        for (int k0 = 0; k0 < mbs.size(); k0 += reps.size()) {
            int first = k0, count = Math.min(reps.size(), mbs.size() - k0);
            outs.addAll(reps.first(count, rep -> {
                MicroBatch mb = mbs.get(first + rep.index());
                float[] weights = mb.gather(w);
                Micro o = microBatch(rep, in, lc, mb, weights, mb.responseTokens() / responseTokens);
                if (spreads != null) {
                    spreads[rep.index()].afterMicroBatch(sum(weights) / wSum);
                }
                return o;
            }));
            if (count > 1) {
                reps.reduceGradients(count);
                if (spreads != null) { // the master's next micro-batch adds onto the reduced sum
                    for (int d = 0; d < count; d++) {
                        spreads[d].rebase(d > 0);
                    }
                }
            }
        }
        return outs;
    }

    /** One optimizer step on the accumulated gradient; a non-finite loss or gradient never reaches the weights. */
    private void optimizerStep(Inputs in, Sums sums) {
        double gn = Double.NaN;
        if (sums.nonFiniteLoss != null) {
            opt.skip(sums.nonFiniteLoss);
            sums.nonFiniteLoss = null;
        } else {
            gn = opt.step(lr.at((int) opt.steps()), gradClip);
        }
        if (Double.isFinite(gn)) {
            reps.broadcast(); // the next mini-batch's forwards see the updated weights on every replica
            sums.gradNorm += gn;
            sums.updates++;
        } else {
            sums.skipped++;
            if (opt.consecutiveSkips() >= maxSkipped) { // thrown before the step ends, so before any checkpoint of it
                throw new UserError(opt.consecutiveSkips() + " updates in a row skipped at step " + (in.step() + 1) + " (last: "
                        + opt.lastSkipReason() + "; train.max_skipped_updates=" + maxSkipped + "); stopped without"
                        + " checkpointing, so the latest checkpoint is the last good one: lower optim.lr or check the model's weights");
            }
        }
    }

    /**
     * One micro-batch on one replica: forward, loss terms, backward. Its loss_* metrics are its part of
     * the mini-batch's loss (the weights are the mini-batch's); the others, token means, are weighted
     * by its share of the mini-batch's response tokens, so both add up over any grouping of the rows.
     */
    private Micro microBatch(Replicas.Replica rep, Inputs in, LossConfig lc, MicroBatch mb, float[] weights, double share) {
        Policies nets = rep.nets();
        SequenceBatch b = mb.batch();
        boolean full = lc.klEstimator().needsFullLogits();
        try (NDManager mm = rep.root().newSubManager()) {
            PolicyForward.Out[] cur = new PolicyForward.Out[1];
            LossTerm.Out o;
            if (staged) {
                o = StagedBackward.run(nets.policy, b, mm, checkpointLayers, h -> {
                    cur[0] = PolicyForward.head(nets.policy, b, mm, h, in.temperature(), ref(nets, b, mm, full), true);
                    return loss(nets, in, lc, mb, cur[0], weights, mm);
                }, x -> scaled(x.loss()));
            } else {
                try (klrl.util.Grad gc = klrl.util.Grad.record()) {
                    cur[0] = PolicyForward.run(nets.policy, b, mm, in.temperature(), ref(nets, b, mm, full), true);
                    o = loss(nets, in, lc, mb, cur[0], weights, mm);
                    gc.backward(scaled(o.loss()));
                }
            }
            return micro(o, cur[0], mb, mm, share);
        }
    }

    /** The reference's hidden states over the micro-batch when the exact KL needs them, else null. */
    private static PolicyForward.Ref ref(Policies nets, SequenceBatch b, NDManager mm, boolean full) {
        return full ? PolicyForward.reference(nets.reference, b, mm) : null;
    }

    /** A micro-batch's metrics once its gradient is taken: loss_* as they are, the others by {@code share}; its entropy sum. */
    private static Micro micro(LossTerm.Out o, PolicyForward.Out cur, MicroBatch mb, NDManager mm, double share) {
        Map<String, Double> metrics = new LinkedHashMap<>();
        o.metrics().forEach((key, v) -> metrics.put(key, key.startsWith("loss_") ? v : v * share));
        return new Micro(metrics, cur.entropy().stopGradient().mul(mb.batch().mask(mm)).sum().getFloat());
    }

    /** The summed loss terms of one micro-batch, differentiable through {@code cur}. */
    private LossTerm.Out loss(Policies nets, Inputs in, LossConfig lc, MicroBatch mb, PolicyForward.Out cur,
                              float[] weights, NDManager mm) {
        SequenceBatch b = mb.batch();
        boolean ppo = nets.ppo();
        NDArray values = !ppo ? null : nets.valueHead.apply(nets.critic == nets.policy ? cur.hidden()
                : PolicyForward.states(b, mm, PolicyForward.hidden(nets.critic, b, mm)));
        TokenBatch tb = new TokenBatch(cur.logp(), b.tensor(mm, mb.gather(in.oldLogp())), b.tensor(mm, mb.gather(in.refLogp())),
                b.tensor(mm, mb.gather(in.advantages())), b.mask(mm), cur.entropy(), cur.fullKl(), values,
                ppo ? b.tensor(mm, mb.gather(in.oldValues())) : null, ppo ? b.tensor(mm, mb.gather(in.returns())) : null,
                b.tensor(mm, weights), in.isWeights() == null ? null : b.tensor(mm, mb.gather(in.isWeights())));
        return LossTerm.total(terms, tb, lc);
    }

    /** The loss times the optimizer's loss scale (1 unless parameters are fp16). */
    private NDArray scaled(NDArray loss) {
        return opt.lossScale() == 1 ? loss : klrl.util.Nd.mul(loss, opt.lossScale());
    }

    private static double sum(float[] v) {
        double s = 0;
        for (float x : v) {
            s += x;
        }
        return s;
    }
}
