package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.List;
import klrl.model.Decoder;

/** For tests outside this package: the training forward over packed rows, as the update runs it. */
public final class SequenceBatchAccess {
    private SequenceBatchAccess() {}

    /** Log-probs [rows, R] of the response tokens (0 past each row's end), every row packed into one micro-batch. */
    public static NDArray packedLogp(Decoder model, List<long[]> prompts, List<long[]> responses, NDManager m) {
        SequenceBatch all = SequenceBatch.of(prompts, responses, 0);
        int[] idx = new int[all.rows()];
        for (int i = 0; i < idx.length; i++) {
            idx[i] = i;
        }
        SequenceBatch packed = all.rows(idx);
        return PolicyForward.run(model, packed, m, 1f).logp().mul(packed.mask(m));
    }
}
