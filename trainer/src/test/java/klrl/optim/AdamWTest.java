package klrl.optim;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import ai.djl.training.GradientCollector;
import java.util.Map;
import klrl.WithManager;
import org.junit.jupiter.api.Test;

/** AdamW against torch.optim.AdamW's update written out by hand, and its fp16 master-weight path. */
class AdamWTest extends WithManager {
    long lastSkipped;
    static final AdamW.Hyper H = new AdamW.Hyper(0.9, 0.999, 1e-8, 0.01);

    /** loss = Σ c·p, so the gradient is c: one step moves p by lr·(c/|c|·(1−β1)/(1−β1)…) plus decay. */
    double[] run(DataType dtype, double lr, int steps, double extraScale) {
        return run(dtype, lr, steps, extraScale, new float[] {1f, -2f, 0.5f, 1e-3f});
    }

    double[] run(DataType dtype, double lr, int steps, double extraScale, float[] coef) {
        NDArray p = m.create(new float[] {0.1f, -0.2f, 0.3f, 0.05f}).toType(dtype, false);
        NDArray c = m.create(coef).toType(dtype, false);
        double[] start = p.toType(DataType.FLOAT64, true).toDoubleArray();
        try (AdamW opt = new AdamW(Map.of("p", p), Map.of(), H, m)) {
            for (int s = 0; s < steps; s++) {
                try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                    // summed and scaled in fp32, as the trainer's loss (fp32 log-probs) is: 65536 is no fp16 number
                    NDArray loss = klrl.model.Casts.to(p.mul(c), DataType.FLOAT32).sum();
                    gc.backward(loss.mul(m.create((float) opt.lossScale())));
                }
                opt.step(lr, 1e9);
            }
            lastSkipped = opt.skippedSteps();
            double[] w = opt.stateTensors().getOrDefault("master.p", p).toType(DataType.FLOAT64, false).toDoubleArray();
            if (extraScale < 0) { // displacement from the (dtype-rounded) start
                for (int i = 0; i < w.length; i++) {
                    w[i] -= start[i];
                }
            }
            return w;
        }
    }

    @Test
    void matchesTheAdamWFormula() {
        double[] got = run(DataType.FLOAT32, 0.01, 3, 1);
        double[] p = {0.1, -0.2, 0.3, 0.05}, c = {1, -2, 0.5, 1e-3};
        for (int i = 0; i < 4; i++) {
            double mm = 0, vv = 0, w = p[i];
            for (int t = 1; t <= 3; t++) {
                mm = 0.9 * mm + 0.1 * c[i];
                vv = 0.999 * vv + 0.001 * c[i] * c[i];
                double upd = (mm / (1 - Math.pow(0.9, t))) / (Math.sqrt(vv / (1 - Math.pow(0.999, t))) + 1e-8) + 0.01 * w;
                w -= 0.01 * upd;
            }
            assertEquals(w, got[i], 1e-6, "element " + i);
        }
    }

    @Test
    void fp16ParametersKeepFp32MasterWeights() {
        // updates of 1e-6 are below fp16's spacing near 0.1 (6e-5): without a master copy they vanish
        float[] coef = {0.5f, -0.25f, 0.125f, 1e-3f};
        double[] fp32 = run(DataType.FLOAT32, 1e-6, 4, -1, coef);
        double[] fp16 = run(DataType.FLOAT16, 1e-6, 5, -1, coef);
        // the first fp16 step overflowed at the initial scale 65536 (the fp16 gradient of the summed
        // product is the scale itself) and was skipped, as torch's GradScaler would; four updates remain
        assertEquals(1, lastSkipped);
        // the same displacement (5 steps of ≈1e-6), to fp16's rounding of the gradients and weight decay
        assertArrayEquals(fp32, fp16, 2e-8);
        assertTrue(Math.abs(fp16[0]) > 3e-6, "master weights did not move: " + fp16[0]);
    }

    @Test
    void overflowSkipsTheUpdateAndHalvesTheScale() {
        NDArray p = m.create(new float[] {0.5f, 0.25f}).toType(DataType.FLOAT16, false);
        try (AdamW opt = new AdamW(Map.of("p", p), Map.of(), H, m)) {
            assertEquals(65536, opt.lossScale());
            try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                // 65536 · 60000 overflows fp16
                gc.backward(p.sum().mul(m.create(65536f * 60000f)));
            }
            double n = opt.step(1e-3, 1.0);
            assertTrue(Double.isNaN(n));
            assertEquals(32768, opt.lossScale());
            assertEquals(1, opt.skippedSteps());
            assertArrayEquals(new float[] {0.5f, 0.25f}, p.toType(DataType.FLOAT32, false).toFloatArray());
            // the next, finite step goes through with the lower scale
            try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                gc.backward(p.sum().mul(m.create((float) opt.lossScale()).toType(DataType.FLOAT16, false)));
            }
            assertEquals(Math.sqrt(2), opt.step(1e-3, 10.0), 1e-3); // the unscaled gradient is (1, 1)
        }
    }

    @Test
    void nonFiniteGradientsNeverReachFp32Weights() {
        NDArray p = m.create(new float[] {0.5f, 0.25f});
        try (AdamW opt = new AdamW(Map.of("p", p), Map.of(), H, m)) {
            for (int k = 1; k <= 3; k++) {
                try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                    gc.backward(p.mul(m.create(new float[] {Float.NaN, 1f})).sum());
                }
                assertTrue(Double.isNaN(opt.step(1e-3, 1.0)));
                assertEquals(k, opt.consecutiveSkips());
                assertTrue(opt.lastSkipReason().contains("gradient of p"), opt.lastSkipReason());
                assertArrayEquals(new float[] {0.5f, 0.25f}, p.toFloatArray());
                assertEquals(0, opt.steps());
            }
            // a finite step goes through on clean gradients and ends the run of skips
            try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                gc.backward(p.sum());
            }
            assertEquals(Math.sqrt(2), opt.step(1e-3, 10.0), 1e-6);
            assertEquals(0, opt.consecutiveSkips());
            assertEquals(3, opt.skippedSteps());
            assertTrue(p.toFloatArray()[0] < 0.5f);
        }
    }
}
