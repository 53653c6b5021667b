package klrl.loss;

import ai.djl.ndarray.NDArray;
import java.util.List;
import klrl.util.UserError;

/**
 * How per-token losses become one scalar, written as weights w [B,T] so that loss = Σ w·ℓ. The same
 * weights serve the KL placements, which need per-sequence sums (the unbiased score term).
 *
 * <ul>
 *   <li>token-mean: w = m / Σm (verl default)
 *   <li>seq-mean-token-sum: w = m / B
 *   <li>seq-mean-token-mean: w = m / (B·|y_b|) (GRPO paper)
 *   <li>seq-mean-token-sum-norm: w = m / (B·T), T the padded response width, a constant when responses
 *       are padded to max_new_tokens (Dr. GRPO's constant normaliser; verl divides by T alone, which
 *       makes the loss scale with batch size)
 * </ul>
 */
public enum Aggregation {
    TOKEN_MEAN("token-mean"),
    SEQ_MEAN_TOKEN_SUM("seq-mean-token-sum"),
    SEQ_MEAN_TOKEN_MEAN("seq-mean-token-mean"),
    SEQ_MEAN_TOKEN_SUM_NORM("seq-mean-token-sum-norm");

    public final String id;

    Aggregation(String id) {
        this.id = id;
    }

    public NDArray weights(NDArray mask) {
        long b = mask.getShape().get(0), t = mask.getShape().get(1);
        return switch (this) {
            case TOKEN_MEAN -> mask.div(mask.sum().maximum(1f));
            case SEQ_MEAN_TOKEN_SUM -> mask.div((float) b);
            case SEQ_MEAN_TOKEN_MEAN -> mask.div(mask.sum(new int[] {1}, true).maximum(1f)).div((float) b);
            case SEQ_MEAN_TOKEN_SUM_NORM -> mask.div((float) (b * t));
        };
    }

    public NDArray apply(NDArray perToken, NDArray mask) {
        return perToken.mul(weights(mask)).sum();
    }

    public static Aggregation parse(String s) {
        for (Aggregation a : values()) {
            if (a.id.equals(s)) {
                return a;
            }
        }
        throw new UserError("unknown loss_agg_mode '" + s + "'; expected one of "
                + List.of(values()).stream().map(a -> a.id).toList());
    }
}
