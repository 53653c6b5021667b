package klrl.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import javax.imageio.ImageIO;
import klrl.metrics.MetricsLog;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYSeries;

/** report's pass_at_k.png from metrics.jsonl files MetricsLog wrote: the first and last evaluation of each run and set. */
class ReportPassAtKTest {
    @TempDir Path tmp;

    /** pass@k for k = 1..8 of an evaluation at {@code step}: rising in k, and with the step. */
    static Map<Integer, Double> pass(long step, double offset) {
        Map<Integer, Double> m = new TreeMap<>();
        for (int k = 1; k <= 8; k++) {
            m.put(k, Math.min(1, offset + 0.01 * step + 0.05 * (31 - Integer.numberOfLeadingZeros(k))));
        }
        return m;
    }

    /** A run folder with training lines and, at each of {@code evalSteps}, an eval line per set (with pass@k when {@code withPass}). */
    static Path run(Path dir, List<String> sets, long[] evalSteps, boolean withPass) throws Exception {
        Files.createDirectories(dir);
        try (MetricsLog log = new MetricsLog(dir.resolve("metrics.jsonl"), -1)) {
            for (long step : evalSteps) {
                if (step > 0) {
                    log.write(new LinkedHashMap<>(Map.of("step", step, "reward_mean", 0.1 * step, "accuracy", 0.05 * step)));
                }
                for (int s = 0; s < sets.size(); s++) {
                    Map<String, Object> e = new LinkedHashMap<>();
                    e.put("step", step);
                    e.put("eval_set", sets.get(s));
                    e.put("eval_accuracy", 0.2 + 0.01 * step);
                    e.put("eval_mean_at_k", 0.15 + 0.01 * step);
                    e.put("eval_k", 8);
                    e.put("eval_examples", 32);
                    if (withPass) {
                        e.put("eval_pass_at", pass(step, 0.1 * s));
                        e.put("eval_maj_at_k", 0.25);
                        e.put("eval_se", Map.of("eval_accuracy", 0.05, "eval_pass_at", Map.of("1", 0.04)));
                        e.put("eval_by_source", Map.of("level=Level 5", Map.of("eval_accuracy", 0.1, "eval_pass_at", Map.of("1", 0.1))));
                    }
                    log.write(e);
                }
            }
        }
        return dir;
    }

    @Test
    void passAtKIsDrawnAtTheFirstAndLastEvaluationOfEachRunAndSetThatLoggedIt() throws Exception {
        // runs without pass@k: the other plots, no pass_at_k.png
        Path old = run(tmp.resolve("old"), List.of("math"), new long[] {0, 5}, false);
        Path none = tmp.resolve("none");
        assertEquals(0, Main.run("report", old.toString(), "--out", none.toString()));
        assertTrue(Files.isRegularFile(none.resolve("accuracy.png")));
        assertFalse(Files.exists(none.resolve(ReportCommand.PASS_AT_K)));
        ReportCommand without = new ReportCommand();
        without.runs = List.of(old);
        assertNull(without.passAtK(List.of(ReportCommand.lines(old))));

        Path a = run(tmp.resolve("runA"), List.of("math", "aime"), new long[] {0, 5, 10}, true);
        Path b = run(tmp.resolve("runB"), List.of("math"), new long[] {0, 4}, true);
        Path out = tmp.resolve("plots");
        assertEquals(0, Main.run("report", a.toString(), b.toString(), "--out", out.toString()));
        BufferedImage png = ImageIO.read(out.resolve(ReportCommand.PASS_AT_K).toFile());
        assertNotNull(png, "pass_at_k.png does not decode as an image");
        assertEquals(900, png.getWidth());
        assertEquals(520, png.getHeight());
        assertNotNull(ImageIO.read(out.resolve("reward.png").toFile())); // the other plots as before

        ReportCommand r = new ReportCommand();
        r.runs = List.of(a, b);
        XYChart chart = r.passAtK(List.of(ReportCommand.lines(a), ReportCommand.lines(b)));
        assertEquals(List.of("runA math @0", "runA math @10", "runA aime @0", "runA aime @10", "runB math @0", "runB math @4"),
                new ArrayList<>(chart.getSeriesMap().keySet()));
        XYSeries last = chart.getSeriesMap().get("runA aime @10");
        List<Double> ks = new ArrayList<>(), values = new ArrayList<>();
        pass(10, 0.1).forEach((k, v) -> {
            ks.add(k.doubleValue());
            values.add(v);
        });
        assertEquals(ks, toList(last.getXData()));
        assertEquals(values, toList(last.getYData()));
        assertTrue(chart.getStyler().isXAxisLogarithmic()); // k from 1 to 8 on a log axis
    }

    private static List<Double> toList(double[] xs) {
        List<Double> l = new ArrayList<>();
        for (double x : xs) {
            l.add(x);
        }
        return l;
    }
}
