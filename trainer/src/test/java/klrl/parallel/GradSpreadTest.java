package klrl.parallel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** grad_var from accumulated gradients equals the formula computed from each micro-batch's own gradient. */
class GradSpreadTest {
    @Test
    void matchesTheWeightedSpreadOfMicroBatchEstimates() {
        try (NDManager root = NDManager.newBaseManager("PyTorch")) {
            NDArray x = root.create(new float[] {0.5f, -1f, 2f});
            NDArray y = root.create(new float[] {1f, 3f});
            x.setRequiresGradient(true);
            y.setRequiresGradient(true);
            Map<String, NDArray> params = new LinkedHashMap<>();
            params.put("x", x);
            params.put("y", y);
            // micro-batch k's loss is a_k·x + b_k·y², so g_k = (a_k, 2·b_k·y)
            float[][] a = {{1, 2, 3}, {0.5f, -1, 0}, {2, 2, -1}};
            float[][] b = {{0.1f, 0.2f}, {1, -1}, {0, 0.5f}};
            double[] share = {0.5, 0.3, 0.2};
            GradSpread spread = new GradSpread(params, root);
            double[] gTotal = new double[5];
            double sumOverShare = 0;
            for (int k = 0; k < 3; k++) {
                try (NDManager m = root.newSubManager();
                     GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                    NDArray loss = x.mul(m.create(a[k])).sum().add(y.mul(y).mul(m.create(b[k])).sum());
                    gc.backward(loss);
                }
                spread.afterMicroBatch(share[k]);
                double[] g = {a[k][0], a[k][1], a[k][2], 2 * b[k][0] * 1, 2 * b[k][1] * 3};
                double sq = 0;
                for (int i = 0; i < 5; i++) {
                    gTotal[i] += g[i];
                    sq += g[i] * g[i];
                }
                sumOverShare += sq / share[k];
            }
            double total = 0;
            for (double v : gTotal) {
                total += v * v;
            }
            double expected = (sumOverShare - total) / total;
            assertTrue(expected > 0);
            assertEquals(expected, GradSpread.value(spread.drain(), params, 3), 1e-5 * expected);
            // one micro-batch has no spread to measure
            try (NDManager m = root.newSubManager();
                 GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                gc.backward(x.sum());
            }
            spread.afterMicroBatch(1.0);
            assertTrue(Double.isNaN(GradSpread.value(spread.drain(), params, 1)));
        }
    }
}
