package klrl.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.training.GradientCollector;
import java.util.List;
import klrl.TestPaths;
import klrl.model.Decoder;
import org.junit.jupiter.api.Test;

/**
 * Regression test for a DJL pitfall: ops with a Java Number operand create a scalar tensor backed by
 * a direct buffer and close it at once; if backward saved it, a garbage collection between forward
 * and backward corrupts the gradient. The decoder and losses must give the same gradient whatever
 * the collector does in between.
 */
class GcSafetyTest {
    float[] gradient(boolean churn, boolean lora) {
        try (NDManager root = NDManager.newBaseManager("PyTorch");
             Decoder model = Decoder.load(TestPaths.fixture("qwen2-bf16-sharded"), root, DataType.FLOAT32)) {
            NDArray w = model.parameters().get("model.layers.0.self_attn.q_proj.weight");
            if (lora) {
                // an adapter's output is scaled by α/r inside the layer, whose scope closes that scalar's handle
                w = model.addAdapters(List.of("q_proj", "down_proj"), 4, 8, 0, 1).get("model.layers.0.self_attn.q_proj.weight").b;
            }
            w.setRequiresGradient(true);
            SequenceBatch b = SequenceBatch.of(List.of(new long[] {5, 17, 33}, new long[] {7}),
                    List.of(new long[] {64, 100}, new long[] {2, 250, 9}), 0);
            try (NDManager m = root.newSubManager();
                 GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                PolicyForward.Out out = PolicyForward.run(model, b, m, 0.7f);
                NDArray loss = out.logp().mul(b.mask(m)).sum().add(out.entropy().sum());
                if (churn) {
                    for (int i = 0; i < 20; i++) {
                        byte[][] junk = new byte[64][];
                        for (int j = 0; j < junk.length; j++) {
                            junk[j] = new byte[1 << 16];
                            java.nio.ByteBuffer.allocateDirect(1 << 14).put(0, (byte) 7);
                            java.nio.ByteBuffer.allocateDirect(4).putFloat(0, 7f); // reuses a freed scalar's memory
                        }
                        System.gc();
                        try {
                            Thread.sleep(5); // lets the cleaner free unreachable direct buffers
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        }
                    }
                }
                gc.backward(loss);
            }
            return w.getGradient().toFloatArray();
        }
    }

    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(booleans = {false, true})
    void gradientsSurviveGarbageCollectionBetweenForwardAndBackward(boolean lora) {
        float[] calm = gradient(false, lora), churned = gradient(true, lora);
        boolean nonzero = false;
        for (float f : calm) {
            assertTrue(Float.isFinite(f));
            nonzero |= f != 0;
        }
        assertTrue(nonzero);
        assertArrayEquals(calm, churned);
    }
}
