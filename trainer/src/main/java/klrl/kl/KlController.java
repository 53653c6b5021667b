package klrl.kl;

import klrl.util.UserError;

/**
 * The KL coefficient β: fixed, or adaptive (Ziegler et al. 2019, as verl's AdaptiveKLController):
 * β ← β·(1 + clip(KL/target − 1, ±0.2)·n/horizon) after each batch of n samples.
 */
public final class KlController {
    private double value;
    private final Double target;
    private final double horizon;

    public KlController(double initial, Double target, double horizon) {
        if (initial < 0 || Double.isNaN(initial)) {
            throw new UserError("kl_coef must be ≥ 0, got " + initial);
        }
        if (target != null && (target <= 0 || horizon <= 0)) {
            throw new UserError("adaptive KL needs kl_target > 0 and kl_horizon > 0");
        }
        this.value = initial;
        this.target = target;
        this.horizon = horizon;
    }

    public double value() {
        return value;
    }

    public void update(double currentKl, int nSamples) {
        if (target == null) {
            return;
        }
        double err = Math.max(-0.2, Math.min(0.2, currentKl / target - 1));
        value *= 1 + err * nSamples / horizon;
    }

    /** For checkpoints: the controller's only state. */
    public void restore(double v) {
        value = v;
    }
}
