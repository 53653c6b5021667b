package klrl.parallel;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The spread of the policy-gradient estimates of one mini-batch's micro-batches (train.grad_var).
 *
 * <p>A mini-batch's gradient is the sum G = Σ_k g_k of its micro-batches' gradients; micro-batch k holds
 * the share w_k of the mini-batch's loss weight (its aggregation weights' sum), so g_k / w_k is its own
 * estimate of G. The metric is their weighted variance around G relative to G's squared norm:
 * <pre>  grad_var = Σ_k w_k ‖g_k/w_k − G‖² / ‖G‖² = (Σ_k ‖g_k‖²/w_k − ‖G‖²) / ‖G‖²</pre>
 * — 0 when every micro-batch points the same way, about K − 1 for K micro-batches of pure noise.
 * Each g_k is the difference of the accumulated gradient before and after the micro-batch, so
 * this keeps one copy of the policy's gradient; that is why it is opt-in. A step reports the mean over
 * its mini-batches with two or more micro-batches.
 */
public final class GradSpread {
    private final Map<String, NDArray> params;
    private final NDManager manager;
    private final Map<String, NDArray> previous = new LinkedHashMap<>();
    private double sumOverShare;
    private boolean finite = true;

    /** @param params the policy's trainable tensors (critic tensors excluded) */
    public GradSpread(Map<String, NDArray> params, NDManager root) {
        this.params = params;
        this.manager = root.newSubManager();
    }

    /** After micro-batch k's backward: adds ‖g_k‖² / w_k and remembers the accumulated gradient. */
    public void afterMicroBatch(double share) {
        double sq = 0;
        for (var e : params.entrySet()) {
            NDArray acc = e.getValue().getGradient();
            NDArray prev = previous.get(e.getKey());
            NDArray g = snapshot(acc);
            try (ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) { // closes the difference and its square
                NDArray diff = prev == null ? g : g.sub(prev);
                sq += diff.mul(diff).sum().getFloat();
            }
            if (prev != null) {
                prev.close();
            }
            previous.put(e.getKey(), g);
        }
        if (!(share > 0) || !Double.isFinite(sq)) {
            finite = false;
        }
        sumOverShare += sq / share;
    }

    /**
     * The accumulated gradient changed outside a micro-batch (data-parallel replicas after a round):
     * the next micro-batch's gradient is measured from what it is now, or from zero when {@code zeroed}.
     */
    public void rebase(boolean zeroed) {
        previous.values().forEach(NDArray::close);
        previous.clear();
        if (zeroed) {
            return;
        }
        for (var e : params.entrySet()) {
            previous.put(e.getKey(), snapshot(e.getValue().getGradient()));
        }
    }

    /** An fp32 copy of an accumulated gradient, owned by this tracker (the gradient itself keeps accumulating). */
    private NDArray snapshot(NDArray grad) {
        try (NDManager m = manager.newSubManager()) {
            NDArray g = grad.toType(DataType.FLOAT32, true);
            g.attach(m);
            NDArray copy = g.duplicate(); // toType to the same dtype may share the gradient's storage
            copy.attach(manager);
            return copy;
        }
    }

    /**
     * Σ_k ‖g_k‖²/w_k over this tracker's micro-batches since the last call (NaN when one was not
     * finite); forgets them. Data-parallel replicas each keep one tracker and add these up.
     */
    public double drain() {
        double s = finite ? sumOverShare : Double.NaN;
        previous.values().forEach(NDArray::close);
        previous.clear();
        sumOverShare = 0;
        finite = true;
        return s;
    }

    /**
     * grad_var from Σ_k ‖g_k‖²/w_k and the mini-batch's whole gradient G, read from {@code params}
     * (after the replicas' gradients were added up); NaN under two micro-batches or when not finite.
     */
    public static double value(double sumOverShare, Map<String, NDArray> params, int microBatches) {
        if (microBatches < 2 || !Double.isFinite(sumOverShare)) {
            return Double.NaN;
        }
        double total = 0;
        for (NDArray p : params.values()) {
            try (ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) {
                NDArray g = p.getGradient().toType(DataType.FLOAT32, false);
                total += g.mul(g).sum().getFloat();
            }
        }
        return total > 0 ? (sumOverShare - total) / total : Double.NaN;
    }
}
