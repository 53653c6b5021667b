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
import klrl.util.UserError;

/**
 * The policy update of one step: ppo_epochs passes over mini-batches (groups of whole prompts), each
 * mini-batch accumulated over micro-batches and followed by one optimizer step. With data-parallel
 * replicas the micro-batches are dealt over them in rounds, their gradients added onto the master's
 * in micro-batch order (the sum one device forms) and the updated tensors copied back after the step. A micro-batch is
 * differentiated end to end, or stage by stage with per-layer recomputation when
 * train.checkpoint_layers > 0 or the layers are placed over several devices.
 */
final class PolicyUpdate {
    private final Replicas reps;
    private final AdamW opt;
    private final LrSchedule lr;
    private final List<LossTerm> terms;
    private final int epochs, micro, checkpointLayers, maxSkipped;
    private final boolean staged;
    private final double gradClip;
    /** Per-micro-batch gradient spread (train.grad_var), one tracker per replica, or null. */
    private final GradSpread[] spreads;
    /** The master's policy tensors (the critic's excluded): what grad_var measures. */
    private final Map<String, NDArray> policyParams;

    /** Everything the update reads per token ([rows·R] arrays; PPO's two value arrays null otherwise). */
    record Inputs(SequenceBatch all, float[] oldLogp, float[] refLogp, float[] advantages, float[] returns,
                  float[] oldValues, int miniRows, float temperature, long step) {}

    /**
     * Loss metrics averaged over the passes, the mean entropy per token, the mean gradient norm over the
     * updates applied, how many updates were skipped for a non-finite loss or gradient, and the mean
     * grad_var over the mini-batches (NaN unless train.grad_var).
     */
    record Out(Map<String, Double> lossMetrics, double entropy, double gradNorm, int skipped, double gradVar) {}

    PolicyUpdate(Replicas reps, AdamW opt, LrSchedule lr, List<LossTerm> terms, int epochs, int micro, int checkpointLayers,
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

    private static Map<String, NDArray> policyTensors(Policies nets) {
        Map<String, NDArray> p = new LinkedHashMap<>(nets.trainable);
        p.keySet().removeAll(nets.lrScale.keySet()); // the critic's tensors
        return p;
    }

    /** Running sums over the micro-batches of one update. */
    private static final class Sums {
        final Map<String, double[]> loss = new LinkedHashMap<>();
        double entropy, gradNorm, gradVar;
        int updates, skipped, gradVars;
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
                sums.skipped, sums.gradVars == 0 ? Double.NaN : sums.gradVar / sums.gradVars);
    }

    /** Rows [m0, m1): gradients accumulated over micro-batches, then one optimizer step. */
    private void miniBatch(Inputs in, LossConfig lc, int m0, int m1, Sums sums) {
        float[] w; // aggregation weights over the whole mini-batch, so micro-batch losses add up to its loss
        try (NDManager mm = reps.master().root().newSubManager()) {
            w = lc.aggregation().weights(in.all().slice(m0, m1).mask(mm)).toFloatArray();
        }
        int r = in.all().r(), micros = (m1 - m0 + micro - 1) / micro;
        double wSum = sum(w);
        // Forward and backward per micro-batch, in rounds of one per replica (micro-batch k on replica
        // k mod size); after each round the replicas' gradients join the master's in micro-batch order.
        List<Micro> outs = new ArrayList<>();
        for (int k0 = 0; k0 < micros; k0 += reps.size()) {
            int first = k0, count = Math.min(reps.size(), micros - k0);
            outs.addAll(reps.first(count, rep -> {
                int s0 = m0 + (first + rep.index()) * micro, s1 = Math.min(m1, s0 + micro);
                float[] weights = Arrays.copyOfRange(w, (s0 - m0) * r, (s1 - m0) * r);
                Micro o = microBatch(rep, in, lc, s0, s1, weights, (double) (s1 - s0) / (m1 - m0));
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
        // Metrics added up in micro-batch order, as on one device.
        for (int k = 0; k < micros; k++) {
            Micro o = outs.get(k);
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
            double v = GradSpread.value(s, policyParams, micros);
            if (Double.isFinite(v)) {
                sums.gradVar += v;
                sums.gradVars++;
            }
        }
        // A non-finite loss or gradient never reaches the weights: the optimizer skips the update.
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

    /** Rows [s0, s1) on one replica: forward, loss terms, backward; metrics weighted by the rows' share of the mini-batch. */
    private Micro microBatch(Replicas.Replica rep, Inputs in, LossConfig lc, int s0, int s1, float[] weights, double share) {
        Policies nets = rep.nets();
        SequenceBatch b = in.all().slice(s0, s1);
        boolean full = lc.klEstimator().needsFullLogits();
        try (NDManager mm = rep.root().newSubManager()) {
            PolicyForward.Out[] cur = new PolicyForward.Out[1];
            LossTerm.Out o;
            if (staged) {
                o = StagedBackward.run(nets.policy, b, mm, checkpointLayers, h -> {
                    cur[0] = PolicyForward.head(nets.policy, b, mm, h, in.temperature(), full, true);
                    return loss(nets, in, lc, b, s0, cur[0], weights, mm);
                }, x -> scaled(x.loss()));
            } else {
                try (klrl.util.Grad gc = klrl.util.Grad.record()) {
                    cur[0] = PolicyForward.run(nets.policy, b, mm, in.temperature(), full);
                    o = loss(nets, in, lc, b, s0, cur[0], weights, mm);
                    gc.backward(scaled(o.loss()));
                }
            }
            Map<String, Double> metrics = new LinkedHashMap<>();
            o.metrics().forEach((key, v) -> metrics.put(key, v * share));
            return new Micro(metrics, cur[0].entropy().stopGradient().mul(b.mask(mm)).sum().getFloat());
        }
    }

    /** The summed loss terms of one micro-batch (rows from s0), differentiable through {@code cur}. */
    private LossTerm.Out loss(Policies nets, Inputs in, LossConfig lc, SequenceBatch b, int s0, PolicyForward.Out cur,
                              float[] weights, NDManager mm) {
        int s1 = s0 + b.rows(), r = b.r();
        NDArray fullKl = null;
        if (lc.klEstimator().needsFullLogits()) {
            PolicyForward.Out ref;
            try (var off = nets.reference.adaptersOff()) {
                ref = PolicyForward.run(nets.reference, b, mm, in.temperature(), true);
            }
            fullKl = PolicyForward.fullKl(cur.logSoftmax(), ref.logSoftmax().stopGradient());
        }
        boolean ppo = nets.ppo();
        NDArray values = !ppo ? null : nets.valueHead.apply(nets.critic == nets.policy ? cur.hidden()
                : PolicyForward.run(nets.critic, b, mm, in.temperature(), false).hidden());
        TokenBatch tb = new TokenBatch(cur.logp(), slice(mm, in.oldLogp(), s0, s1, r), slice(mm, in.refLogp(), s0, s1, r),
                slice(mm, in.advantages(), s0, s1, r), b.mask(mm), cur.entropy(), fullKl, values,
                ppo ? slice(mm, in.oldValues(), s0, s1, r) : null, ppo ? slice(mm, in.returns(), s0, s1, r) : null,
                mm.create(weights, new Shape(s1 - s0, r)));
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

    private static NDArray slice(NDManager m, float[] v, int s0, int s1, int r) {
        return m.create(Arrays.copyOfRange(v, s0 * r, s1 * r), new Shape(s1 - s0, r));
    }
}
