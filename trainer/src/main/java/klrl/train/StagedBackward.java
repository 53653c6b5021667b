package klrl.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import klrl.model.Decoder;

/**
 * Activation checkpointing by staged backward, the one mechanism both for saving memory and for
 * placing layer groups on different devices: the decoder runs forward without a graph, keeping only
 * each stage's input; then the head (loss) is differentiated, and each stage, last to first, is
 * recomputed inside a collector and back-propagated with the gradient handed over from the stage
 * after it. Parameter gradients equal one end-to-end backward (tested).
 */
public final class StagedBackward {
    private StagedBackward() {}

    /** What the head computes from the final hidden states: the scalar to differentiate, and anything else. */
    public interface Head<R> extends Function<NDArray, R> {}

    /**
     * @param stageLayers decoder layers per stage (≥ 1)
     * @param loss        extracts the scalar loss from the head's result
     */
    public static <R> R run(Decoder model, SequenceBatch b, NDManager m, int stageLayers, Head<R> head,
                            Function<R, NDArray> loss) {
        klrl.util.Runtime.noGradOutsideCollectors(); // step 1 must record nothing
        NDArray tokens = b.tokens(m);
        Decoder.Pass pass = b.pass(model, tokens, m);
        int layers = model.numLayers();
        // 1. Forward with no graph, keeping stage inputs only.
        List<NDArray> inputs = new ArrayList<>();
        NDArray x = model.embed(tokens);
        for (int l0 = 0; l0 < layers; l0 += stageLayers) {
            inputs.add(x);
            x = stage(model, x, pass, l0, Math.min(layers, l0 + stageLayers));
        }
        // 2. Head: loss from the (detached) last hidden states; its gradient is handed to the last stage.
        NDArray last = leaf(x);
        R result;
        try (GradientCollector gc = collector()) {
            result = head.apply(model.finalNorm(last, pass));
            gc.backward(loss.apply(result));
        }
        NDArray grad = last.getGradient();
        // 3. Stages last to first: recompute with a graph, back-propagate the handed-over gradient.
        for (int s = inputs.size() - 1; s >= 0; s--) {
            int l0 = s * stageLayers;
            NDArray in = leaf(inputs.get(s));
            try (GradientCollector gc = collector()) {
                NDArray out = stage(model, in, pass, l0, Math.min(layers, l0 + stageLayers));
                JniUtils.backward((PtNDArray) out, (PtNDArray) grad, false, false);
            }
            grad = in.getGradient();
        }
        // 4. The embedding.
        try (GradientCollector gc = collector()) {
            JniUtils.backward((PtNDArray) model.embed(tokens), (PtNDArray) grad, false, false);
        }
        return result;
    }

    private static NDArray stage(Decoder model, NDArray x, Decoder.Pass pass, int from, int to) {
        for (int l = from; l < to; l++) {
            x = model.layer(l, x, pass);
        }
        return x;
    }

    private static NDArray leaf(NDArray x) {
        NDArray d = x.stopGradient();
        d.setRequiresGradient(true);
        return d;
    }

    private static GradientCollector collector() {
        return Engine.getEngine("PyTorch").newGradientCollector();
    }
}
