package klrl.train;

import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.training.GradientCollector;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import klrl.TestPaths;
import klrl.model.Decoder;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Checkpointed, staged backward gives the gradients of one end-to-end backward. */
class StagedBackwardTest {
    static final SequenceBatch BATCH = SequenceBatch.of(List.of(new long[] {5, 17, 33}, new long[] {7}),
            List.of(new long[] {64, 100}, new long[] {2, 250, 9}), 0);

    static NDArray loss(PolicyForward.Out o, NDArray mask) {
        return o.logp().mul(mask).sum().add(o.entropy().mul(mask).sum().mul(o.entropy().getManager().create(0.1f)));
    }

    static Map<String, float[]> gradients(String fixture, int stageLayers) {
        try (NDManager root = NDManager.newBaseManager("PyTorch");
             Decoder model = Decoder.load(TestPaths.fixture(fixture), root, DataType.FLOAT32)) {
            klrl.util.Runtime.noGradOutsideCollectors();
            model.parameters().values().forEach(p -> p.setRequiresGradient(true));
            try (NDManager m = root.newSubManager()) {
                NDArray mask = BATCH.mask(m);
                if (stageLayers == 0) {
                    try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                        gc.backward(loss(PolicyForward.run(model, BATCH, m, 0.8f, false), mask));
                    }
                } else {
                    StagedBackward.run(model, BATCH, m, stageLayers,
                            h -> PolicyForward.head(model, BATCH, m, h, 0.8f, false, true), o -> loss(o, mask));
                }
            }
            Map<String, float[]> g = new LinkedHashMap<>();
            model.parameters().forEach((k, v) -> g.put(k, v.getGradient().toFloatArray()));
            return g;
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-bf16-sharded", "llama3-bf16-sharded", "qwen2-f16-tied"})
    void everyStagingGivesTheSameGradients(String fixture) {
        Map<String, float[]> plain = gradients(fixture, 0);
        for (int stage : new int[] {1, 2, 3}) {
            Map<String, float[]> staged = gradients(fixture, stage);
            for (var e : plain.entrySet()) {
                float[] a = e.getValue(), b = staged.get(e.getKey());
                double worst = 0, scale = 0;
                for (int i = 0; i < a.length; i++) {
                    worst = Math.max(worst, Math.abs(a[i] - b[i]));
                    scale = Math.max(scale, Math.abs(a[i]));
                }
                assertTrue(scale > 0, e.getKey() + " got no gradient");
                assertTrue(worst <= 1e-5 * Math.max(1, scale), fixture + " stage " + stage + " " + e.getKey() + ": " + worst);
            }
        }
    }
}
