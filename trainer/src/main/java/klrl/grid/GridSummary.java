package klrl.grid;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import klrl.util.Json;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.style.markers.SeriesMarkers;

/**
 * The grid's results: per run, then per group (the runs that differ only by seed) as mean ± std over
 * seeds; written as summary.md, summary.json and figures (one line per cell with its ± std band as
 * error bars, per setting and β).
 *
 * <p>Events, defined before any grid ran (src/site/markdown/paper-on-cpu.md):
 * <ul>
 *   <li><b>stopped</b>: the run ended with an error (e.g. too many non-finite updates in a row);</li>
 *   <li><b>reward crash</b>: the train reward's 20-step moving mean, after reaching at least 0.2, falls
 *       below half its highest value so far;</li>
 *   <li><b>accuracy collapse</b>: at an evaluation the in-domain greedy accuracy is below half its
 *       value before training;</li>
 *   <li><b>unstable</b>: any of the three.</li>
 * </ul>
 */
public final class GridSummary {
    private GridSummary() {}

    static final int WINDOW = 20;

    /** What one run measured. NaN where the run has no such value. */
    record RunStats(GridSpec.Run run, String status, int steps, double idStart, double idFinal, double idBest,
                    double oodStart, double oodFinal, double oodBest, Map<String, Double> oodFinalBySet,
                    double idMeanAtKFinal, double oodMeanAtKFinal, double entropyFinal, double klK1Final, double klForwardFinal,
                    double gradVarMedian, double gradVarMax, double rewardFinal, boolean stopped, boolean rewardCrash,
                    boolean accCollapse, double seconds,
                    TreeMap<Integer, Double> idCurve, TreeMap<Integer, Double> oodCurve, Map<String, TreeMap<Integer, Double>> perStep) {
        boolean unstable() {
            return stopped || rewardCrash || accCollapse;
        }
    }

    static final List<String> STEP_KEYS = List.of("reward_mean", "entropy", "kl_k1", "kl_forward", "grad_var");

    /** Reads one run folder; null when it has not started. */
    static RunStats read(GridSpec spec, GridSpec.Run r, Path dir) throws IOException {
        Path f = dir.resolve("metrics.jsonl");
        if (!Files.isRegularFile(f)) {
            return null;
        }
        Map<String, TreeMap<Integer, Double>> evalBySet = new LinkedHashMap<>(), meanAtK = new LinkedHashMap<>();
        Map<String, TreeMap<Integer, Double>> perStep = new LinkedHashMap<>();
        STEP_KEYS.forEach(k -> perStep.put(k, new TreeMap<>()));
        for (String line : Files.readAllLines(f)) {
            JsonNode n;
            try {
                n = Json.MAPPER.readTree(line);
            } catch (IOException torn) {
                continue; // a torn last line of a killed run
            }
            if (n == null || !n.has("step")) {
                continue;
            }
            int step = n.get("step").asInt();
            if (n.has("eval_set")) {
                evalBySet.computeIfAbsent(n.get("eval_set").asText(), z -> new TreeMap<>()).put(step, n.path("eval_accuracy").asDouble());
                if (n.has("eval_mean_at_k")) {
                    meanAtK.computeIfAbsent(n.get("eval_set").asText(), z -> new TreeMap<>()).put(step, n.get("eval_mean_at_k").asDouble());
                }
            } else {
                for (String k : STEP_KEYS) {
                    if (n.has(k) && n.get(k).isNumber()) {
                        perStep.get(k).put(step, n.get(k).asDouble());
                    }
                }
            }
        }
        JsonNode st = Files.isRegularFile(dir.resolve(GridRunner.STATUS)) ? Json.read(dir.resolve(GridRunner.STATUS)) : null;
        String status = st == null ? "running" : st.path("status").asText();
        TreeMap<Integer, Double> id = evalBySet.getOrDefault(spec.inDomain(), new TreeMap<>());
        TreeMap<Integer, Double> ood = new TreeMap<>(), oodK = new TreeMap<>();
        List<String> oodSets = evalBySet.keySet().stream().filter(s -> !s.equals(spec.inDomain())).toList();
        for (Integer step : id.keySet()) {
            double sum = 0, sumK = 0;
            int n = 0, nK = 0;
            for (String s : oodSets) {
                Double v = evalBySet.get(s).get(step);
                if (v != null) {
                    sum += v;
                    n++;
                }
                Double k = meanAtK.getOrDefault(s, new TreeMap<>()).get(step);
                if (k != null) {
                    sumK += k;
                    nK++;
                }
            }
            if (n == oodSets.size() && n > 0) {
                ood.put(step, sum / n);
            }
            if (nK == oodSets.size() && nK > 0) {
                oodK.put(step, sumK / nK);
            }
        }
        Map<String, Double> oodFinalBySet = new LinkedHashMap<>();
        for (String s : oodSets) {
            oodFinalBySet.put(s, last(evalBySet.get(s)));
        }
        TreeMap<Integer, Double> reward = perStep.get("reward_mean");
        double idStart = first(id);
        boolean accCollapse = false;
        for (var e : id.entrySet()) {
            accCollapse |= e.getKey() > 0 && idStart > 0 && e.getValue() < 0.5 * idStart;
        }
        boolean stopped = status.equals("stopped");
        int steps = reward.isEmpty() ? 0 : reward.lastKey();
        return new RunStats(r, status, steps, idStart, last(id), max(id), first(ood), last(ood), max(ood), oodFinalBySet,
                last(meanAtK.getOrDefault(spec.inDomain(), new TreeMap<>())), last(oodK),
                tailMean(perStep.get("entropy")), tailMean(perStep.get("kl_k1")), tailMean(perStep.get("kl_forward")),
                median(perStep.get("grad_var")), max(perStep.get("grad_var")), tailMean(reward), stopped, rewardCrash(reward),
                accCollapse, st == null ? Double.NaN : st.path("seconds").asDouble(Double.NaN), id, ood, perStep);
    }

    /** The reward-crash event: the moving mean falls below half its peak after the peak reached 0.2. */
    static boolean rewardCrash(TreeMap<Integer, Double> reward) {
        List<Double> v = new ArrayList<>(reward.values());
        double peak = Double.NEGATIVE_INFINITY, sum = 0;
        for (int i = 0; i < v.size(); i++) {
            sum += v.get(i);
            if (i >= WINDOW) {
                sum -= v.get(i - WINDOW);
            }
            if (i >= WINDOW - 1) {
                double m = sum / WINDOW;
                if (peak >= 0.2 && m < 0.5 * peak) {
                    return true;
                }
                peak = Math.max(peak, m);
            }
        }
        return false;
    }

    /** Writes summary.md, summary.json and the figures into {@code out}; returns the Markdown. */
    public static String write(GridSpec spec, Path out) throws IOException {
        List<RunStats> all = new ArrayList<>();
        for (GridSpec.Run r : spec.runs()) {
            RunStats s = read(spec, r, out.resolve("runs").resolve(r.name()));
            if (s != null) {
                all.add(s);
            }
        }
        Map<String, List<RunStats>> groups = new LinkedHashMap<>();
        for (GridSpec.Run r : spec.runs()) {
            groups.putIfAbsent(r.group(), new ArrayList<>());
        }
        all.forEach(s -> groups.get(s.run().group()).add(s));
        ObjectNode json = Json.MAPPER.createObjectNode();
        ArrayNode gs = json.putArray("groups");
        StringBuilder md = new StringBuilder();
        md.append("| setting | cell | β | seeds | in-domain final | in-domain best | OOD final | OOD best | ")
                .append("entropy | kl_k1 | grad_var (median) | grad_var (max) | unstable | stopped / reward crash / acc. collapse |\n");
        md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (var g : groups.entrySet()) {
            List<RunStats> rs = g.getValue();
            if (rs.isEmpty()) {
                continue;
            }
            GridSpec.Run r0 = rs.get(0).run();
            ObjectNode o = gs.addObject();
            o.put("group", g.getKey());
            o.put("setting", r0.setting());
            o.put("cell", r0.cell());
            if (r0.beta() != null) {
                o.put("beta", r0.beta());
            }
            o.put("seeds", rs.size());
            o.put("finished", rs.stream().filter(s -> !s.status().equals("running")).count());
            md.append("| ").append(r0.setting()).append(" | ").append(r0.cell()).append(" | ")
                    .append(r0.beta() == null ? "—" : fmt(r0.beta())).append(" | ").append(rs.size()).append(" | ");
            for (String k : List.of("id_final", "id_best", "ood_final", "ood_best", "entropy", "kl_k1", "grad_var_median", "grad_var_max")) {
                double[] v = rs.stream().mapToDouble(s -> value(s, k)).toArray();
                double[] ms = meanStd(v);
                ObjectNode m = o.putObject(k);
                m.put("mean", ms[0]);
                m.put("std", ms[1]);
                ArrayNode per = m.putArray("per_seed");
                for (double x : v) {
                    per.add(x);
                }
                boolean pct = k.startsWith("id") || k.startsWith("ood");
                md.append(Double.isNaN(ms[0]) ? "—" : pct ? String.format("%.1f ± %.1f", 100 * ms[0], 100 * ms[1])
                        : String.format("%s ± %s", fmt(ms[0]), fmt(ms[1]))).append(" | ");
            }
            long unstable = rs.stream().filter(RunStats::unstable).count();
            o.put("unstable", unstable);
            o.put("stopped", rs.stream().filter(RunStats::stopped).count());
            o.put("reward_crash", rs.stream().filter(RunStats::rewardCrash).count());
            o.put("acc_collapse", rs.stream().filter(RunStats::accCollapse).count());
            md.append(unstable).append("/").append(rs.size()).append(" | ")
                    .append(o.get("stopped").asLong()).append(" / ").append(o.get("reward_crash").asLong()).append(" / ")
                    .append(o.get("acc_collapse").asLong()).append(" |\n");
        }
        md.append("\nAccuracies in %, greedy, mean ± std over seeds (sample std); OOD = the mean over the out-of-domain sets. ")
                .append("Before training every run starts from the same model: in-domain ")
                .append(all.isEmpty() ? "—" : String.format("%.1f %%", 100 * all.get(0).idStart()))
                .append(", OOD ").append(all.isEmpty() ? "—" : String.format("%.1f %%", 100 * all.get(0).oodStart())).append(".\n");
        ArrayNode runs = json.putArray("runs");
        for (RunStats s : all) {
            ObjectNode o = runs.addObject();
            o.put("name", s.run().name());
            o.put("group", s.run().group());
            o.put("status", s.status());
            o.put("steps", s.steps());
            for (String k : List.of("id_start", "id_final", "id_best", "ood_start", "ood_final", "ood_best", "id_mean_at_k_final",
                    "ood_mean_at_k_final", "entropy", "kl_k1", "kl_forward", "grad_var_median", "grad_var_max", "reward_final", "seconds")) {
                double v = value(s, k);
                if (Double.isFinite(v)) {
                    o.put(k, v);
                }
            }
            s.oodFinalBySet().forEach((k, v) -> o.put("final_" + k, v));
            o.put("stopped", s.stopped());
            o.put("reward_crash", s.rewardCrash());
            o.put("acc_collapse", s.accCollapse());
        }
        Json.writeAtomically(out.resolve("summary.json"), Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(json));
        Json.writeAtomically(out.resolve("summary.md"), md.toString());
        figures(groups, out.resolve("figures"));
        return md.toString();
    }

    static double value(RunStats s, String k) {
        return switch (k) {
            case "id_start" -> s.idStart();
            case "id_final" -> s.idFinal();
            case "id_best" -> s.idBest();
            case "ood_start" -> s.oodStart();
            case "ood_final" -> s.oodFinal();
            case "ood_best" -> s.oodBest();
            case "id_mean_at_k_final" -> s.idMeanAtKFinal();
            case "ood_mean_at_k_final" -> s.oodMeanAtKFinal();
            case "entropy" -> s.entropyFinal();
            case "kl_k1" -> s.klK1Final();
            case "kl_forward" -> s.klForwardFinal();
            case "grad_var_median" -> s.gradVarMedian();
            case "grad_var_max" -> s.gradVarMax();
            case "reward_final" -> s.rewardFinal();
            case "seconds" -> s.seconds();
            default -> throw new IllegalArgumentException(k);
        };
    }

    /** Per setting and β: in-domain and OOD accuracy, grad_var, entropy and KL, one line ± band per cell. */
    static void figures(Map<String, List<RunStats>> groups, Path dir) throws IOException {
        Files.createDirectories(dir);
        Map<String, List<List<RunStats>>> panels = new LinkedHashMap<>();
        for (List<RunStats> g : groups.values()) {
            if (!g.isEmpty()) {
                GridSpec.Run r = g.get(0).run();
                panels.computeIfAbsent(r.setting(), z -> new ArrayList<>()).add(g);
            }
        }
        for (var p : panels.entrySet()) {
            List<Double> betas = p.getValue().stream().map(g -> g.get(0).run().beta()).filter(b -> b != null).distinct().toList();
            for (Double beta : betas.isEmpty() ? java.util.Collections.<Double>singletonList(null) : betas) {
                // the cells at this β, and the β-free cells (no KL) beside each
                List<List<RunStats>> cells = p.getValue().stream()
                        .filter(g -> g.get(0).run().beta() == null || g.get(0).run().beta().equals(beta)).toList();
                String name = p.getKey() + (beta == null ? "" : "-b" + beta);
                chart(cells, name, "in-domain greedy accuracy", s -> s.idCurve(), dir, true);
                chart(cells, name, "out-of-domain greedy accuracy (mean of sets)", s -> s.oodCurve(), dir, true);
                for (String k : STEP_KEYS) {
                    chart(cells, name, k, s -> smooth(s.perStep().get(k)), dir, false);
                }
            }
        }
    }

    private static void chart(List<List<RunStats>> cells, String name, String what,
                              java.util.function.Function<RunStats, TreeMap<Integer, Double>> curve, Path dir, boolean markers)
            throws IOException {
        XYChart c = new XYChartBuilder().width(900).height(520).title(name + ": " + what + " (mean ± std over seeds)")
                .xAxisTitle("step").yAxisTitle(what).build();
        c.getStyler().setErrorBarsColorSeriesColor(true); // each cell's band in its own colour
        int series = 0;
        for (List<RunStats> g : cells) {
            TreeMap<Integer, double[]> agg = new TreeMap<>();
            for (RunStats s : g) {
                curve.apply(s).forEach((step, v) -> agg.computeIfAbsent(step, z -> new double[0]));
            }
            List<Double> xs = new ArrayList<>(), ys = new ArrayList<>(), es = new ArrayList<>();
            for (Integer step : agg.keySet()) {
                double[] v = g.stream().map(curve).filter(m -> m.containsKey(step)).mapToDouble(m -> m.get(step)).toArray();
                double[] ms = meanStd(v);
                if (Double.isFinite(ms[0])) {
                    xs.add(step.doubleValue());
                    ys.add(ms[0]);
                    es.add(Double.isFinite(ms[1]) ? ms[1] : 0);
                }
            }
            if (!xs.isEmpty()) {
                c.addSeries(g.get(0).run().cell(), xs, ys, es).setMarker(markers ? SeriesMarkers.CIRCLE : SeriesMarkers.NONE);
                series++;
            }
        }
        if (series > 0) {
            BitmapEncoder.saveBitmap(c, dir.resolve(name + "-" + what.replaceAll("[^A-Za-z0-9_]+", "_").replaceAll("_+$", "") + ".png")
                    .toString(), BitmapEncoder.BitmapFormat.PNG);
        }
    }

    /** A per-step series as its moving mean over WINDOW steps, every WINDOW/2 steps (readable error bars). */
    static TreeMap<Integer, Double> smooth(TreeMap<Integer, Double> v) {
        TreeMap<Integer, Double> out = new TreeMap<>();
        List<Integer> ks = new ArrayList<>(v.keySet());
        for (int i = WINDOW - 1; i < ks.size(); i += WINDOW / 2) {
            double sum = 0;
            int n = 0;
            for (int j = i - WINDOW + 1; j <= i; j++) {
                double x = v.get(ks.get(j));
                if (Double.isFinite(x)) {
                    sum += x;
                    n++;
                }
            }
            if (n > 0) {
                out.put(ks.get(i), sum / n);
            }
        }
        return out;
    }

    static double[] meanStd(double[] v) {
        double s = 0;
        int n = 0;
        for (double x : v) {
            if (Double.isFinite(x)) {
                s += x;
                n++;
            }
        }
        if (n == 0) {
            return new double[] {Double.NaN, Double.NaN};
        }
        double mean = s / n, ss = 0;
        for (double x : v) {
            if (Double.isFinite(x)) {
                ss += (x - mean) * (x - mean);
            }
        }
        return new double[] {mean, n > 1 ? Math.sqrt(ss / (n - 1)) : 0};
    }

    private static double first(TreeMap<Integer, Double> m) {
        return m.isEmpty() ? Double.NaN : m.firstEntry().getValue();
    }

    private static double last(TreeMap<Integer, Double> m) {
        return m == null || m.isEmpty() ? Double.NaN : m.lastEntry().getValue();
    }

    private static double max(TreeMap<Integer, Double> m) {
        return m.values().stream().filter(Double::isFinite).mapToDouble(Double::doubleValue).max().orElse(Double.NaN);
    }

    private static double median(TreeMap<Integer, Double> m) {
        double[] v = m.values().stream().filter(Double::isFinite).mapToDouble(Double::doubleValue).sorted().toArray();
        return v.length == 0 ? Double.NaN : v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }

    /** The mean over the last WINDOW steps. */
    private static double tailMean(TreeMap<Integer, Double> m) {
        List<Double> v = new ArrayList<>(m.values());
        double s = 0;
        int n = 0;
        for (int i = Math.max(0, v.size() - WINDOW); i < v.size(); i++) {
            if (Double.isFinite(v.get(i))) {
                s += v.get(i);
                n++;
            }
        }
        return n == 0 ? Double.NaN : s / n;
    }

    private static String fmt(double x) {
        if (x == 0) {
            return "0";
        }
        double a = Math.abs(x);
        return a >= 100 ? String.format("%.0f", x) : a >= 1 ? String.format("%.2f", x) : a >= 0.01 ? String.format("%.3f", x)
                : String.format("%.2e", x);
    }
}
