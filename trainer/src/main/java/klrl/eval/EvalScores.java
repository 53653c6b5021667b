package klrl.eval;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import klrl.data.Example;

/**
 * What an evaluation reports of a set of prompts: greedy accuracy, mean@N, pass@k for k = 1…N,
 * maj@N, a bootstrap standard error for each, and the same broken down by what the rows say of
 * themselves (data_source, level, type, and the file when the prompts come from several).
 *
 * <p>Every number is a plain mean over prompts of a per-prompt value, so a reader recomputes it from
 * the samples file: greedy 0/1, mean@N c/N, pass@k {@link PassAtK#of}(N, c, k), maj@N {@link Majority#score}.
 */
public final class EvalScores {
    /** Resamples of the prompts for the standard errors. */
    public static final int BOOTSTRAP = 1_000;

    /**
     * One prompt's outcome.
     *
     * @param greedy  whether the greedy completion is correct
     * @param correct each sample's verdict (empty without samples)
     * @param classes each sample's answer class ({@link Majority#classes}), -1 without an answer
     */
    public record Prompt(Example example, boolean greedy, boolean[] correct, int[] classes) {
        int c() {
            int c = 0;
            for (boolean b : correct) {
                c += b ? 1 : 0;
            }
            return c;
        }
    }

    private EvalScores() {}

    /**
     * eval_accuracy, and with samples (k > 0) eval_mean_at_k, eval_k, eval_pass_at (k → value),
     * eval_maj_at_k; eval_examples; eval_se (the standard error of each, over {@link #BOOTSTRAP}
     * resamples of the prompts drawn from {@code seed}); and eval_by_source (label → the same numbers
     * with their standard errors) when the rows carry labels.
     */
    public static Map<String, Object> summarize(List<Prompt> prompts, int k, long seed) {
        if (prompts.isEmpty()) {
            throw new IllegalArgumentException("no prompts to summarize");
        }
        double[][] v = perPrompt(prompts, k);
        Map<String, Object> r = numbers(prompts, v, k);
        r.put("eval_se", standardErrors(v, k, seed));
        Map<String, Map<String, Object>> by = new LinkedHashMap<>();
        groups(prompts).forEach((label, members) -> {
            List<Prompt> ps = members.stream().map(prompts::get).toList();
            double[][] rows = members.stream().map(i -> v[i]).toArray(double[][]::new);
            Map<String, Object> g = numbers(ps, rows, k);
            g.put("eval_se", standardErrors(rows, k, seed));
            by.put(label, g);
        });
        if (!by.isEmpty()) {
            r.put("eval_by_source", by);
        }
        return r;
    }

    /** The numbers of some prompts from their per-prompt values; eval_accuracy, eval_mean_at_k and eval_k first, as report and grid read them. */
    static Map<String, Object> numbers(List<Prompt> prompts, double[][] v, int k) {
        Map<String, Object> r = new LinkedHashMap<>();
        int greedy = 0;
        long c = 0;
        for (Prompt p : prompts) {
            greedy += p.greedy() ? 1 : 0;
            c += p.c();
        }
        r.put("eval_accuracy", (double) greedy / prompts.size());
        if (k > 0) {
            r.put("eval_mean_at_k", (double) c / ((long) prompts.size() * k));
            r.put("eval_k", k);
            Map<String, Double> pass = new LinkedHashMap<>();
            for (int j = 1; j <= k; j++) {
                pass.put(Integer.toString(j), mean(v, 1 + j));
            }
            r.put("eval_pass_at", pass);
            r.put("eval_maj_at_k", mean(v, 2 + k));
        }
        r.put("eval_examples", prompts.size());
        return r;
    }

    /**
     * Per prompt: [greedy, c/N, pass@1 … pass@N, maj@N] — the values the means are of, and what the
     * bootstrap resamples; [greedy] alone without samples.
     */
    static double[][] perPrompt(List<Prompt> prompts, int k) {
        double[][] v = new double[prompts.size()][];
        for (int i = 0; i < v.length; i++) {
            Prompt p = prompts.get(i);
            if (p.correct().length != k || p.classes().length != k) {
                throw new IllegalArgumentException("prompt " + i + " has " + p.correct().length + " samples, expected " + k);
            }
            if (k == 0) {
                v[i] = new double[] {p.greedy() ? 1 : 0};
                continue;
            }
            double[] row = new double[k + 3];
            int c = p.c();
            double[] pass = PassAtK.all(k, c);
            row[0] = p.greedy() ? 1 : 0;
            row[1] = (double) c / k;
            System.arraycopy(pass, 1, row, 2, k);
            row[2 + k] = Majority.score(p.classes(), p.correct());
            v[i] = row;
        }
        return v;
    }

    private static double mean(double[][] v, int col) {
        double s = 0;
        for (double[] row : v) {
            s += row[col];
        }
        return s / v.length;
    }

    /**
     * The bootstrap standard error of each number: the standard deviation of its mean over resampled prompt
     * sets. Each prompt carries its own sampled verdicts, so the spread holds the sampling of the N
     * completions as well as the draw of the prompts.
     */
    static Map<String, Object> standardErrors(double[][] v, int k, long seed) {
        int cols = v[0].length, n = v.length;
        double[] sum = new double[cols], sq = new double[cols];
        SplittableRandom rng = new SplittableRandom(seed);
        double[] m = new double[cols];
        for (int b = 0; b < BOOTSTRAP; b++) {
            java.util.Arrays.fill(m, 0);
            for (int i = 0; i < n; i++) {
                double[] row = v[rng.nextInt(n)];
                for (int j = 0; j < cols; j++) {
                    m[j] += row[j];
                }
            }
            for (int j = 0; j < cols; j++) {
                double x = m[j] / n;
                sum[j] += x;
                sq[j] += x * x;
            }
        }
        double[] se = new double[cols];
        for (int j = 0; j < cols; j++) {
            double mu = sum[j] / BOOTSTRAP;
            se[j] = Math.sqrt(Math.max(0, (sq[j] - BOOTSTRAP * mu * mu) / (BOOTSTRAP - 1)));
        }
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("eval_accuracy", se[0]);
        if (k > 0) {
            r.put("eval_mean_at_k", se[1]);
            Map<String, Double> pass = new LinkedHashMap<>();
            for (int j = 1; j <= k; j++) {
                pass.put(Integer.toString(j), se[1 + j]);
            }
            r.put("eval_pass_at", pass);
            r.put("eval_maj_at_k", se[2 + k]);
        }
        return r;
    }

    /**
     * The prompts (their indices) by label: "data_source=…", "level=…", "type=…" where rows carry them
     * (a row without one is in no group of that kind), "file=…" when they come from more than one file;
     * labels sorted within each kind.
     */
    static Map<String, List<Integer>> groups(List<Prompt> prompts) {
        Map<String, List<Integer>> out = new LinkedHashMap<>();
        String[] kinds = {"data_source", "level", "type", "file"};
        for (int kind = 0; kind < kinds.length; kind++) {
            TreeMap<String, List<Integer>> byValue = new TreeMap<>();
            for (int i = 0; i < prompts.size(); i++) {
                String value = label(prompts.get(i).example(), kind);
                if (value != null) {
                    byValue.computeIfAbsent(value, z -> new ArrayList<>()).add(i);
                }
            }
            if (kind == 3 && byValue.size() < 2) {
                continue; // one file: the breakdown is the whole
            }
            String name = kinds[kind];
            byValue.forEach((value, members) -> out.put(name + "=" + value, members));
        }
        return out;
    }

    private static String label(Example e, int kind) {
        return switch (kind) {
            case 0 -> e.labels().dataSource();
            case 1 -> e.labels().level();
            case 2 -> e.labels().type();
            default -> e.source() == null ? null : e.source().replaceFirst(":\\d+$", "");
        };
    }
}
