package klrl.parallel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.training.GradientCollector;
import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import klrl.TestPaths;
import klrl.model.Decoder;
import klrl.model.ModelConfig;
import klrl.model.Placement;
import klrl.train.PolicyForward;
import klrl.train.SequenceBatch;
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
        return gradients(fixture, stageLayers, 1);
    }

    /** Gradients with the layers placed over {@code devices} CPU "devices" (the seam GPUs use). */
    static Map<String, float[]> gradients(String fixture, int stageLayers, int devices) {
        try (NDManager root = NDManager.newBaseManager("PyTorch"); Decoder model = placed(root, fixture, devices)) {
            klrl.util.Runtime.noGradOutsideCollectors();
            model.parameters().values().forEach(p -> p.setRequiresGradient(true));
            try (NDManager m = root.newSubManager()) {
                NDArray mask = BATCH.mask(m);
                if (stageLayers == 0 && devices == 1) {
                    try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                        gc.backward(loss(PolicyForward.run(model, BATCH, m, 0.8f), mask));
                    }
                } else {
                    StagedBackward.run(model, BATCH, m, stageLayers,
                            h -> PolicyForward.head(model, BATCH, m, h, 0.8f, null, true), o -> loss(o, mask));
                }
            }
            Map<String, float[]> g = new LinkedHashMap<>();
            model.parameters().forEach((k, v) -> g.put(k, v.getGradient().toFloatArray()));
            return g;
        }
    }

    /** A test model in fp32 with its layers placed over {@code devices} CPU "devices". */
    static Decoder placed(NDManager root, String fixture, int devices) {
        Path dir = TestPaths.fixture(fixture);
        return Decoder.load(dir, root, DataType.FLOAT32, Placement.balanced(Collections.nCopies(devices, Device.cpu()), ModelConfig.load(dir)));
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-bf16-sharded", "llama3-bf16-sharded", "qwen2-f16-tied"})
    void everyStagingGivesTheSameGradients(String fixture) {
        Map<String, float[]> plain = gradients(fixture, 0);
        for (int stage : new int[] {1, 2, 3}) {
            assertSame(fixture + " stage " + stage, plain, gradients(fixture, stage));
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-bf16-sharded", "llama3-bf16-sharded", "qwen2-f16-tied"})
    void layersPlacedOverDevicesGiveTheSameGradients(String fixture) {
        Map<String, float[]> plain = gradients(fixture, 0);
        // 2 and 3 device groups, with and without recomputation inside each group
        assertSame(fixture + " 2 devices", plain, gradients(fixture, 0, 2));
        assertSame(fixture + " 3 devices", plain, gradients(fixture, 0, 3));
        assertSame(fixture + " 2 devices, checkpointed", plain, gradients(fixture, 1, 2));
    }

    @org.junit.jupiter.api.Test
    void stagesCutAtDeviceChangesAndCheckpointIntervals() {
        Placement p = new Placement(List.of(Device.cpu(), Device.cpu()), new int[] {0, 0, 0, 1, 1, 1, 1}, 0);
        assertArrayEquals(new int[] {0, 3, 3, 7}, flat(StagedBackward.stages(p, 7, 0)));
        assertArrayEquals(new int[] {0, 2, 2, 3, 3, 5, 5, 7}, flat(StagedBackward.stages(p, 7, 2)));
        assertArrayEquals(new int[] {0, 7}, flat(StagedBackward.stages(Placement.single(Device.cpu(), 7), 7, 0)));
    }

    private static int[] flat(List<int[]> st) {
        return st.stream().flatMapToInt(java.util.Arrays::stream).toArray();
    }

    @org.junit.jupiter.api.Test
    void aMultiDeviceDecoderRefusesAnEndToEndGraph() {
        try (NDManager root = NDManager.newBaseManager("PyTorch"); Decoder model = placed(root, "qwen2-bf16-sharded", 2)) {
            model.parameters().values().forEach(p -> p.setRequiresGradient(true));
            try (NDManager m = root.newSubManager();
                 GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                assertThrows(IllegalStateException.class, () -> PolicyForward.run(model, BATCH, m, 1f));
            }
        }
    }

    private static void assertSame(String what, Map<String, float[]> plain, Map<String, float[]> staged) {
        for (var e : plain.entrySet()) {
            float[] a = e.getValue(), b = staged.get(e.getKey());
            double worst = 0, scale = 0;
            for (int i = 0; i < a.length; i++) {
                worst = Math.max(worst, Math.abs(a[i] - b[i]));
                scale = Math.max(scale, Math.abs(a[i]));
            }
            assertTrue(scale > 0, e.getKey() + " got no gradient");
            assertTrue(worst <= 1e-5 * Math.max(1, scale), what + " " + e.getKey() + ": " + worst);
        }
    }
}
