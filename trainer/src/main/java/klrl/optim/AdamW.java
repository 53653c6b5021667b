package klrl.optim;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * AdamW as torch.optim.AdamW (decoupled weight decay, bias-corrected moments), with global
 * gradient-norm clipping. State is kept in fp32 in its own manager; every update runs in an
 * NDScope so its temporaries are freed at once, and parameters are updated in place outside any
 * gradient collector.
 */
public final class AdamW implements AutoCloseable {
    public record Hyper(double beta1, double beta2, double eps, double weightDecay) {}

    private final Map<String, NDArray> params;
    private final Map<String, Double> lrScale;
    private final Map<String, NDArray> m = new LinkedHashMap<>(), v = new LinkedHashMap<>();
    /** fp32 master copies of non-fp32 parameters: fp16 cannot hold updates smaller than its spacing. */
    private final Map<String, NDArray> master = new LinkedHashMap<>();
    /** Dynamic loss scale (1 and fixed when every parameter is fp32). */
    private double lossScale = 1;
    private int goodSteps;
    private long skipped;
    /** Skips in a row that no loss scale could absorb (fp32, or fp16 already at scale 1). */
    private int consecutiveSkips;
    private String lastSkipReason = "";
    static final int SCALE_GROWTH_INTERVAL = 200;
    private final NDManager state;
    private final Hyper h;
    private long t;

    /** @param lrScale per-parameter multiplier of the learning rate (absent = 1) */
    public AdamW(Map<String, NDArray> params, Map<String, Double> lrScale, Hyper h, NDManager parent) {
        this.params = params;
        this.lrScale = lrScale;
        this.h = h;
        this.state = parent.newSubManager();
        for (var e : params.entrySet()) {
            e.getValue().setRequiresGradient(true);
            // moments beside their parameter: with layers placed over GPUs, each GPU updates its own
            m.put(e.getKey(), state.zeros(e.getValue().getShape(), DataType.FLOAT32, e.getValue().getDevice()));
            v.put(e.getKey(), state.zeros(e.getValue().getShape(), DataType.FLOAT32, e.getValue().getDevice()));
            if (e.getValue().getDataType() != DataType.FLOAT32) {
                NDArray w = e.getValue().toType(DataType.FLOAT32, true);
                w.attach(state);
                master.put(e.getKey(), w);
            }
        }
        if (!master.isEmpty()) {
            lossScale = 65536; // fp16 gradients underflow without it; halves on overflow, doubles when stable
        }
    }

    /** Multiply the loss by this before backward; step() divides it out of the gradients. */
    public double lossScale() {
        return lossScale;
    }

    /** Updates skipped for a non-finite loss or gradient (fp16 overflows included). */
    public long skippedSteps() {
        return skipped;
    }

    /** Updates skipped in a row for a non-finite loss or gradient that the loss scale could not absorb. */
    public int consecutiveSkips() {
        return consecutiveSkips;
    }

    /** Why the last update was skipped: the non-finite loss, or the first parameter with a non-finite gradient. */
    public String lastSkipReason() {
        return lastSkipReason;
    }

    /** Global L2 norm of all gradients (before clipping); NaN or infinite when one of them is. */
    public double gradNorm() {
        try (NDScope scope = new NDScope()) {
            NDArray total = null;
            for (NDArray p : params.values()) {
                NDArray g = p.getGradient().toType(DataType.FLOAT32, false);
                NDArray s = g.mul(g).sum();
                total = total == null ? s : total.add(s.toDevice(total.getDevice(), false));
            }
            return Math.sqrt(total.getFloat()) / lossScale;
        }
    }

    /** The first parameter whose gradient holds a NaN or infinity. */
    private String firstNonFiniteGradient() {
        for (var e : params.entrySet()) {
            try (NDScope scope = new NDScope()) {
                if (!Float.isFinite(e.getValue().getGradient().toType(DataType.FLOAT32, false).abs().max().getFloat())) {
                    return e.getKey();
                }
            }
        }
        return "?";
    }

    /**
     * Clips to {@code maxNorm}, applies one AdamW update at learning rate {@code lr}, zeroes gradients.
     * Non-finite gradients never reach the weights: the update is skipped (see {@link #skip}) and NaN returned.
     */
    public double step(double lr, double maxNorm) {
        double norm = gradNorm();
        if (!Double.isFinite(norm)) {
            skip("non-finite gradient of " + firstNonFiniteGradient());
            return Double.NaN;
        }
        consecutiveSkips = 0;
        // the gradients carry the loss scale: the clip factor divides it out
        float clip = (float) (Math.min(1.0, maxNorm / (norm + 1e-6)) / lossScale);
        if (!master.isEmpty() && ++goodSteps % SCALE_GROWTH_INTERVAL == 0) {
            lossScale *= 2; // for the next step's loss
        }
        t++;
        double bc1 = 1 - Math.pow(h.beta1(), t), bc2 = 1 - Math.pow(h.beta2(), t);
        // The scalar operands once per step and device: DJL turns every Java number operand into a
        // fresh one-element tensor (on a GPU with a host-to-device copy), ten per parameter tensor.
        double[] values = {clip, h.beta1(), 1 - h.beta1(), h.beta2(), 1 - h.beta2(), bc1, bc2, h.eps(), h.weightDecay()};
        try (NDScope stepScope = new NDScope()) { // closes the scalars
            Map<ai.djl.Device, NDArray[]> scalars = new java.util.HashMap<>();
            Map<String, NDArray> rates = new java.util.HashMap<>();
            for (var e : params.entrySet()) {
                NDArray p = e.getValue();
                // made outside the per-parameter scope, which would close them after one use
                NDArray[] c = scalars.computeIfAbsent(p.getDevice(), d -> scalarsOn(d, values));
                double a = lr * lrScale.getOrDefault(e.getKey(), 1.0);
                NDArray rate = rates.computeIfAbsent(p.getDevice() + "/" + a, x -> scalarsOn(p.getDevice(), new double[] {a})[0]);
                try (NDScope scope = new NDScope()) {
                    NDArray g = p.getGradient();
                    NDArray g32 = g.toType(DataType.FLOAT32, false).mul(c[0]);
                    NDArray mm = m.get(e.getKey()), vv = v.get(e.getKey());
                    mm.muli(c[1]).addi(g32.mul(c[2]));
                    vv.muli(c[3]).addi(g32.mul(g32).muli(c[4]));
                    NDArray update = mm.div(c[5]).div(vv.div(c[6]).sqrt().add(c[7]));
                    NDArray w32 = master.getOrDefault(e.getKey(), p);
                    if (h.weightDecay() != 0) {
                        update = update.add(w32.mul(c[8]));
                    }
                    w32.subi(update.mul(rate));
                    if (w32 != p) {
                        // write the master back into the fp16 parameter in place (no host round trip)
                        p.subi(p).addi(w32.toType(p.getDataType(), false));
                    }
                    g.subi(g); // zero in place for the next accumulation
                }
            }
        }
        return norm;
    }

    /**
     * Drops the accumulated gradients without an update. With fp16 parameters the loss scale halves
     * (an overflow of the scaled gradients is expected while it settles); a skip it cannot absorb
     * counts toward {@link #consecutiveSkips}.
     */
    public void skip(String reason) {
        skipped++;
        goodSteps = 0;
        if (master.isEmpty() || lossScale == 1) {
            consecutiveSkips++;
        }
        lossScale = master.isEmpty() ? 1 : Math.max(1, lossScale / 2);
        lastSkipReason = reason;
        zeroGradients();
    }

    /** fp32 scalars on device d, as the float operands they replace (the caller's scope closes them). */
    private NDArray[] scalarsOn(ai.djl.Device d, double[] values) {
        NDArray[] out = new NDArray[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = state.full(new ai.djl.ndarray.types.Shape(), (float) values[i], DataType.FLOAT32, d);
        }
        return out;
    }

    private void zeroGradients() {
        for (NDArray p : params.values()) {
            try (NDScope scope = new NDScope()) {
                NDArray g = p.getGradient();
                g.set(new ai.djl.ndarray.index.NDIndex(":"), 0); // a fill, so Inf/NaN do not survive
            }
        }
    }

    public long steps() {
        return t;
    }

    /** Optimizer state for checkpoints: "m.NAME", "v.NAME" tensors and the step count. */
    public Map<String, NDArray> stateTensors() {
        Map<String, NDArray> out = new LinkedHashMap<>();
        m.forEach((k, x) -> out.put("m." + k, x));
        v.forEach((k, x) -> out.put("v." + k, x));
        master.forEach((k, x) -> out.put("master." + k, x));
        return out;
    }

    public void restore(Map<String, NDArray> tensors, long steps, double scale) {
        // the same names the checkpoint was written with, checked and copied as every other restore
        klrl.model.SafeTensors.copyInto(stateTensors(), tensors, "optimizer.safetensors");
        lossScale = scale;
        t = steps;
    }

    @Override
    public void close() {
        state.close();
    }
}
