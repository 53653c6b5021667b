package klrl.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;

/**
 * Differentiable dtype casts. DJL's toType runs under a no-grad guard and cuts the autograd graph;
 * a cumulative product over a singleton axis with an output dtype is a cast that autograd sees.
 */
public final class Casts {
    private Casts() {}

    public static NDArray to(NDArray x, DataType dtype) {
        if (x.getDataType() == dtype) {
            return x;
        }
        int last = x.getShape().dimension();
        return x.expandDims(last).cumProd(last, dtype).squeeze(last);
    }
}
