package klrl.parallel;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import klrl.model.Decoder;
import klrl.train.SequenceBatch;
import klrl.util.Grad;

/**
 * Staged backward, the one mechanism for activation checkpointing and for placing layer groups on
 * different devices. The decoder is cut into stages (at every device change, and every
 * {@code checkpointLayers} layers within a device); each stage's input is a leaf, so the gradient
 * is handed from stage to stage explicitly, moved across devices in between: a device copy cuts
 * autograd, a hand-off does not need it. With checkpointing the forward keeps only stage inputs and
 * each stage is recomputed with a graph during backward; without it (placement only) each stage
 * keeps its graph from the forward and nothing is recomputed. Parameter gradients equal one
 * end-to-end backward (tested).
 */
public final class StagedBackward {
    private StagedBackward() {}

    /** What the head computes from the final hidden states: the scalar to differentiate, and anything else. */
    public interface Head<R> extends Function<NDArray, R> {}

    /**
     * @param checkpointLayers recompute in stages of this many layers; 0 = no recomputation (stages
     *                         are then the device groups of the model's placement)
     * @param loss             extracts the scalar loss from the head's result
     */
    public static <R> R run(Decoder model, SequenceBatch b, NDManager m, int checkpointLayers, Head<R> head,
                            Function<R, NDArray> loss) {
        klrl.util.Runtime.noGradOutsideCollectors(); // the forward below records nothing unless asked
        boolean recompute = checkpointLayers > 0;
        NDArray tokens = b.tokens(m);
        Decoder.Pass pass = b.pass(model, tokens, m);
        List<int[]> stages = stages(model.placement(), model.numLayers(), checkpointLayers);
        // 1. Forward stage by stage: keep each stage's input (and, without recomputation, its graph).
        List<NDArray> inputs = new ArrayList<>(), outputs = new ArrayList<>();
        NDArray x = model.embed(tokens);
        for (int[] st : stages) {
            NDArray in = model.toLayer(st[0], x);
            if (recompute) {
                inputs.add(in);
                x = stage(model, in, pass, st[0], st[1]);
            } else {
                in = leaf(in);
                inputs.add(in);
                try (Grad gc = Grad.record()) {
                    x = stage(model, in, pass, st[0], st[1]);
                }
                outputs.add(x);
            }
        }
        // 2. Head: loss from the (detached) last hidden states; its gradient is handed to the last stage.
        NDArray last = leaf(model.toOutput(x));
        R result;
        try (Grad gc = Grad.record()) {
            result = head.apply(model.finalNorm(last, pass));
            gc.backward(loss.apply(result));
        }
        // 3. Stages last to first: back-propagate the handed-over gradient (recomputing the stage first).
        NDArray grad = backward(model, stages, inputs, outputs, pass, last.getGradient(), recompute);
        // 4. The embedding, when it trains (with LoRA it is frozen: nothing below the first stage records).
        if (model.embeddingTrains()) {
            lookupBackward(model, tokens, null, grad);
        }
        return result;
    }

    /**
     * Back-propagates {@code grad}, the gradient of the last of {@code stages}' outputs, through them
     * last to first (each recomputed first, or through the graph its forward kept in {@code outputs});
     * returns the gradient of the first one's input.
     */
    static NDArray backward(Decoder model, List<int[]> stages, List<NDArray> inputs, List<NDArray> outputs, Decoder.Pass pass,
                            NDArray grad, boolean recompute) {
        for (int s = stages.size() - 1; s >= 0; s--) {
            int[] st = stages.get(s);
            NDArray in = recompute ? leaf(inputs.get(s)) : inputs.get(s);
            try (Grad gc = Grad.record()) {
                NDArray out = recompute ? stage(model, in, pass, st[0], st[1]) : outputs.get(s);
                gc.backward(out, grad.toDevice(out.getDevice(), false));
            }
            grad = in.getGradient();
        }
        return grad;
    }

    /**
     * The token embedding's gradient from {@code grad}, the gradient of the first layer's input: the
     * lookup recomputed with a graph, in the matrix ({@code alias} null) or in an alias of it. Returns the lookup.
     */
    static NDArray lookupBackward(Decoder model, NDArray tokens, NDArray alias, NDArray grad) {
        try (Grad gc = Grad.record()) {
            NDArray e = alias != null ? model.embed(tokens, alias) : model.embed(tokens);
            gc.backward(e, grad.toDevice(e.getDevice(), false));
            return e;
        }
    }

    /** Stages as [from, to) layer ranges: a new one at every device change and every {@code every} layers. */
    static List<int[]> stages(klrl.model.Placement p, int layers, int every) {
        List<int[]> out = new ArrayList<>();
        int from = 0;
        for (int l = 1; l <= layers; l++) {
            if (l == layers || p.startsGroup(l) || (every > 0 && l - from == every)) {
                out.add(new int[] {from, l});
                from = l;
            }
        }
        return out;
    }

    static NDArray stage(Decoder model, NDArray x, Decoder.Pass pass, int from, int to) {
        for (int l = from; l < to; l++) {
            x = model.layer(l, x, pass);
        }
        return x;
    }

    static NDArray leaf(NDArray x) {
        NDArray d = x.stopGradient();
        d.setRequiresGradient(true);
        return d;
    }
}
