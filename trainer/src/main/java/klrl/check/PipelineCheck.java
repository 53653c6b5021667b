package klrl.check;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import klrl.model.Decoder;
import klrl.model.Placement;
import klrl.parallel.Pipeline;
import klrl.parallel.StagedBackward;
import klrl.train.PolicyForward;
import klrl.train.SequenceBatch;
import klrl.util.Grad;

/**
 * What {@code gpu-check} compares on a multi-GPU node: the gradients of Σ log π over several
 * micro-batches with the layers placed over the devices, accumulated one group at a time and through
 * the pipeline (a thread per device). On CPU "devices" they are equal bit for bit; on GPUs this is
 * where a stream or a tensor left on the wrong device would show.
 */
public final class PipelineCheck {
    private PipelineCheck() {}

    /**
     * Per parameter, on the host; {@code pipelined} runs the 1F1B update, else {@link StagedBackward} per
     * micro-batch in order (on one device without recomputation, one end-to-end backward each).
     */
    public static Map<String, float[]> gradients(Path dir, Placement p, List<SequenceBatch> batches, int checkpointLayers,
                                                 boolean pipelined) {
        try (NDManager root = NDManager.newBaseManager(p.output(), "PyTorch");
             Decoder model = Decoder.load(dir, root, DataType.FLOAT32, p)) {
            klrl.util.Runtime.noGradOutsideCollectors();
            model.parameters().values().forEach(a -> a.setRequiresGradient(true));
            if (pipelined) {
                Pipeline pipe = new Pipeline(p.stages(), 0);
                try {
                    pipe.update(model, batches, root, checkpointLayers, (k, h, mm) -> {
                        SequenceBatch b = batches.get(k);
                        NDArray loss = PolicyForward.head(model, b, mm, h, 1f, null, false).logp().mul(b.mask(mm)).sum();
                        return new Pipeline.Loss<>(loss, () -> null);
                    });
                } finally {
                    pipe.stop();
                }
            } else {
                for (SequenceBatch b : batches) {
                    try (NDManager m = root.newSubManager()) {
                        NDArray mask = b.mask(m);
                        if (p.stages() == 1 && checkpointLayers == 0) { // one device: the plain end-to-end backward
                            try (Grad gc = Grad.record()) {
                                gc.backward(PolicyForward.run(model, b, m, 1f, null, false).logp().mul(mask).sum());
                            }
                        } else {
                            StagedBackward.run(model, b, m, checkpointLayers, h -> PolicyForward.head(model, b, m, h, 1f, null, false),
                                    o -> o.logp().mul(mask).sum());
                        }
                    }
                }
            }
            Map<String, float[]> g = new LinkedHashMap<>();
            model.parameters().forEach((k, v) -> g.put(k, v.getGradient().toDevice(Device.cpu(), false).toFloatArray()));
            return g;
        }
    }

    /**
     * The largest difference of two sets of gradients, per tensor relative to its largest gradient in
     * {@code a}, over the tensors; infinite when one is NaN.
     */
    public static double gradientDiff(Map<String, float[]> a, Map<String, float[]> b) {
        double worst = 0;
        for (var e : a.entrySet()) {
            float[] x = e.getValue(), y = b.get(e.getKey());
            double scale = 1e-30, diff = 0;
            for (int i = 0; i < x.length; i++) {
                scale = Math.max(scale, Math.abs(x[i]));
                diff = Math.max(diff, Math.abs(x[i] - y[i]));
            }
            worst = Math.max(worst, Double.isNaN(diff) ? Double.POSITIVE_INFINITY : diff / scale);
        }
        return worst;
    }
}
