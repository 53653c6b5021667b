package klrl.cli;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import klrl.util.Json;
import klrl.util.UserError;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.style.markers.SeriesMarkers;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "report", mixinStandardHelpOptions = true,
        description = {"Plot metrics of one or more runs (overlaid) as PNG files: reward, accuracy, KL, entropy, length, and"
            + " pass@k against k at each eval set's first and last evaluation (when the runs logged pass@k).",
            "With --grid DIR: a grid's table (summary.md, summary.json) and figures, one line and ± std band per cell."})
public final class ReportCommand implements Callable<Integer> {
    @Parameters(arity = "0..*", paramLabel = "RUN_DIR", description = "run folders holding metrics.jsonl") List<Path> runs;
    @Option(names = "--grid", paramLabel = "GRID_DIR", description = "a folder the grid command wrote (its grid-spec.yaml and runs/)") Path grid;
    @Option(names = "--out", defaultValue = "report", description = "folder for the PNGs (default: ${DEFAULT-VALUE})") Path out;

    /** One plot: its file name, title and the metrics drawn on it. */
    record Plot(String file, String title, List<String> keys) {}

    static final List<Plot> PLOTS = List.of(
            new Plot("reward.png", "Reward (train)", List.of("reward_mean")),
            new Plot("accuracy.png", "Accuracy (train samples; held-out greedy)", List.of("accuracy", "eval_accuracy")),
            new Plot("kl.png", "KL to the reference", List.of("kl_k1", "kl_k3", "kl_forward")),
            new Plot("entropy.png", "Entropy per token", List.of("entropy")),
            new Plot("length.png", "Response length", List.of("response_length")));

    /** A run's legend name: its folder name, numbered when two runs share one. */
    String label(int i) {
        String n = String.valueOf(runs.get(i).toAbsolutePath().normalize().getFileName());
        long same = runs.subList(0, i).stream().filter(r -> String.valueOf(r.toAbsolutePath().normalize().getFileName()).equals(n)).count();
        return same == 0 ? n : n + " (" + (same + 1) + ")";
    }

    @Override
    public Integer call() throws IOException {
        if (grid != null) {
            Path spec = grid.resolve("grid-spec.yaml");
            if (!Files.isRegularFile(spec)) {
                throw new UserError(spec + ": not found (is " + grid + " a folder the grid command wrote?)");
            }
            System.out.print(klrl.grid.GridSummary.write(klrl.grid.GridSpec.load(spec.toString()), grid));
            return 0;
        }
        if (runs == null || runs.isEmpty()) {
            throw new UserError("report: name one or more run folders, or --grid DIR");
        }
        Files.createDirectories(out);
        List<List<JsonNode>> data = new ArrayList<>();
        for (Path r : runs) {
            data.add(lines(r));
        }
        for (Plot p : PLOTS) {
            XYChart chart = new XYChartBuilder().width(900).height(520).title(p.title()).xAxisTitle("step").yAxisTitle(String.join(", ", p.keys())).build();
            chart.getStyler().setLegendVisible(true);
            int series = 0;
            for (int i = 0; i < runs.size(); i++) {
                for (String k : p.keys()) {
                    // one line per eval set: a run evaluating several sets writes one line per set and step
                    Map<String, List<double[]>> bySet = new LinkedHashMap<>();
                    for (JsonNode n : data.get(i)) {
                        if (n.has(k) && n.get(k).isNumber()) {
                            bySet.computeIfAbsent(n.path("eval_set").asText(""), z -> new ArrayList<>())
                                    .add(new double[] {n.get("step").asDouble(), n.get(k).asDouble()});
                        }
                    }
                    for (var e : bySet.entrySet()) {
                        String name = label(i) + (p.keys().size() > 1 ? " " + k : "") + (e.getKey().isEmpty() ? "" : " " + e.getKey());
                        chart.addSeries(name, e.getValue().stream().map(v -> v[0]).toList(), e.getValue().stream().map(v -> v[1]).toList())
                                .setMarker(k.startsWith("eval") ? SeriesMarkers.CIRCLE : SeriesMarkers.NONE);
                        series++;
                    }
                }
            }
            if (series > 0) {
                BitmapEncoder.saveBitmap(chart, out.resolve(p.file()).toString(), BitmapEncoder.BitmapFormat.PNG);
            }
        }
        XYChart passAtK = passAtK(data);
        if (passAtK != null) {
            BitmapEncoder.saveBitmap(passAtK, out.resolve(PASS_AT_K).toString(), BitmapEncoder.BitmapFormat.PNG);
        }
        System.out.println(out.toAbsolutePath());
        return 0;
    }

    /** A run folder's metrics.jsonl, line by line (a torn last line left out). */
    static List<JsonNode> lines(Path r) throws IOException {
        Path f = r.resolve("metrics.jsonl");
        if (!Files.isRegularFile(f)) {
            throw new UserError(f + ": not found (is " + r + " a run folder?)");
        }
        List<JsonNode> lines = new ArrayList<>();
        List<String> raw = Files.readAllLines(f);
        for (int j = 0; j < raw.size(); j++) {
            if (raw.get(j).isBlank()) {
                continue;
            }
            try {
                lines.add(Json.MAPPER.readTree(raw.get(j)));
            } catch (IOException e) {
                if (j < raw.size() - 1) { // a torn last line is a run still writing or killed mid-line
                    throw new UserError(f + ":" + (j + 1) + ": not a JSON line");
                }
            }
        }
        return lines;
    }

    static final String PASS_AT_K = "pass_at_k.png";

    /**
     * pass@k against k at the first and the last evaluation of every run and eval set that logged
     * eval_pass_at, one series each ("RUN SET @STEP"): how far sampling more reaches beyond one sample,
     * and whether training moved pass@1 only or every k. k on a logarithmic axis (pass@k grows about
     * linearly in log k). Null when no eval line has pass@k.
     */
    XYChart passAtK(List<List<JsonNode>> data) {
        XYChart chart = new XYChartBuilder().width(900).height(520).title("pass@k on held-out sets, first and last evaluation")
                .xAxisTitle("k").yAxisTitle("pass@k").build();
        chart.getStyler().setLegendVisible(true);
        int maxK = 0;
        for (int i = 0; i < data.size(); i++) {
            Map<String, List<JsonNode>> bySet = new LinkedHashMap<>();
            for (JsonNode n : data.get(i)) {
                if (n.has("eval_set") && n.path("eval_pass_at").isObject() && !passAt(n).isEmpty()) {
                    bySet.computeIfAbsent(n.get("eval_set").asText(), z -> new ArrayList<>()).add(n);
                }
            }
            for (var e : bySet.entrySet()) {
                List<JsonNode> evals = new ArrayList<>(e.getValue());
                evals.sort(Comparator.comparingLong(n -> n.path("step").asLong()));
                List<JsonNode> drawn = evals.size() == 1 ? evals : List.of(evals.get(0), evals.get(evals.size() - 1));
                for (JsonNode n : drawn) {
                    TreeMap<Integer, Double> pass = passAt(n);
                    maxK = Math.max(maxK, pass.lastKey());
                    chart.addSeries(label(i) + " " + e.getKey() + " @" + n.path("step").asLong(),
                            pass.keySet().stream().map(Integer::doubleValue).toList(), List.copyOf(pass.values()))
                            .setMarker(SeriesMarkers.CIRCLE);
                }
            }
        }
        if (chart.getSeriesMap().isEmpty()) {
            return null;
        }
        if (maxK > 1) { // a log axis needs a span: with k = 1 alone it stays linear
            chart.getStyler().setXAxisLogarithmic(true).setXAxisLogarithmicDecadeOnly(false);
        }
        return chart;
    }

    /** An eval line's pass@k by k (its keys are k's decimal strings). */
    static TreeMap<Integer, Double> passAt(JsonNode n) {
        TreeMap<Integer, Double> m = new TreeMap<>();
        for (var e : n.path("eval_pass_at").properties()) {
            try {
                if (e.getValue().isNumber()) {
                    m.put(Integer.parseInt(e.getKey().strip()), e.getValue().asDouble());
                }
            } catch (NumberFormatException notK) {
                // not a k: left out
            }
        }
        return m;
    }
}
