package klrl.loss;

import klrl.kl.KlEstimator;
import klrl.kl.KlPlacement;
import klrl.util.UserError;

/**
 * Everything the loss terms read (built from the training config, whose records hold the defaults).
 *
 * @param clipLow    PPO ε_low: ratio floor 1 − ε_low
 * @param clipHigh   PPO ε_high: ratio ceiling 1 + ε_high (clip-higher when > ε_low, DAPO)
 * @param dualClip   dual-clip c (> 1) bounding the loss of negative-advantage tokens; null = off
 * @param klCoef     β, the current KL coefficient (the controller's value)
 * @param klSafeguards clamp log-ratios before exp (see KlEstimator); off only for exact checks
 * @param valueClip  PPO value clip range; null = unclipped
 * @param policyLoss token-level ratios (vanilla PPO clip) or sequence-level ones (GSPO)
 */
public record LossConfig(Aggregation aggregation, double clipLow, double clipHigh, Double dualClip,
                         KlEstimator klEstimator, KlPlacement klPlacement, double klCoef, boolean klSafeguards,
                         double entropyCoef, Double valueClip, double valueCoef, PolicyLoss.Kind policyLoss) {

    public LossConfig(Aggregation aggregation, double clipLow, double clipHigh, Double dualClip, KlEstimator klEstimator,
                      KlPlacement klPlacement, double klCoef, boolean klSafeguards, double entropyCoef, Double valueClip,
                      double valueCoef) {
        this(aggregation, clipLow, clipHigh, dualClip, klEstimator, klPlacement, klCoef, klSafeguards, entropyCoef, valueClip,
                valueCoef, PolicyLoss.Kind.VANILLA);
    }

    public LossConfig {
        policyLoss = policyLoss == null ? PolicyLoss.Kind.VANILLA : policyLoss;
        if (clipLow < 0 || clipLow >= 1 || clipHigh < 0) {
            throw new UserError("clip_ratio_low must be in [0,1) and clip_ratio_high ≥ 0, got " + clipLow + ", " + clipHigh);
        }
        if (dualClip != null && dualClip <= 1) {
            throw new UserError("clip_ratio_c (dual clip) must be > 1, got " + dualClip);
        }
    }

    public LossConfig withKlCoef(double beta) {
        return new LossConfig(aggregation, clipLow, clipHigh, dualClip, klEstimator, klPlacement, beta, klSafeguards,
                entropyCoef, valueClip, valueCoef, policyLoss);
    }
}
