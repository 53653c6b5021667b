package klrl.run;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import klrl.config.TrainConfig;
import klrl.data.Dataset;
import klrl.data.Example;
import klrl.data.Prompts;
import klrl.data.Rows;
import klrl.util.Progress;
import klrl.util.UserError;

/**
 * A run's data: the training set and the held-out sets, read and checked before any model loads
 * (a bad file or field costs seconds, not a 7B load), then rendered once the tokenizer is there, with
 * one line per set saying what was read and what the model will see.
 */
public final class RunData {
    /**
     * The training set; with data.overlong_prompts: filter, the rows whose prompts fit once {@link #render}
     * has measured them (the tokenizer is needed for that, and comes after the data is read).
     */
    public Dataset.Loaded train;
    /** Held-out sets by name (the file's name without its extension), at most eval.max_examples rows each. */
    final Map<String, Dataset.Loaded> eval = new LinkedHashMap<>();
    /** The held-out sets whole, as read: with filter, eval.max_examples rows are taken among those that fit. */
    private final Map<String, Dataset.Loaded> evalRead = new LinkedHashMap<>();
    private final boolean filter;
    private final int maxExamples;

    /** Reads every set; fields follow data.* (eval files: eval.* when set), bundled sets their own. */
    public RunData(TrainConfig cfg) {
        var d = cfg.data();
        var e = cfg.eval();
        this.filter = d.filterOverlong();
        this.maxExamples = e.maxExamples();
        this.train = Dataset.read(d.train() != null ? d.train() : Dataset.BUNDLED_TRAIN, d.promptField(), d.answerField());
        List<String> specs = Dataset.specs(d.eval() != null ? d.eval() : Dataset.BUNDLED_TEST);
        for (String spec : specs) {
            Dataset.Loaded l = readEval(cfg, spec);
            String name = name(spec, specs);
            if (eval.containsKey(name)) {
                throw new UserError("data.eval names two sets " + name + "; give them files or folders of different names");
            }
            evalRead.put(name, l);
            eval.put(name, first(l, e.maxExamples()));
        }
    }

    private static Dataset.Loaded first(Dataset.Loaded l, int rows) {
        return new Dataset.Loaded(l.spec(), l.examples().head(rows), l.files(), l.mapping());
    }

    /** A held-out set: each field by eval.* when set, else by data.*'s (errors name the setting used). */
    public static Dataset.Loaded readEval(TrainConfig cfg, String spec) {
        var d = cfg.data();
        var e = cfg.eval();
        return Dataset.read(spec, e.promptField() != null ? e.promptField() : d.promptField(),
                e.answerField() != null ? e.answerField() : d.answerField(),
                e.promptField() != null ? "eval.prompt_field" : "data.prompt_field",
                e.answerField() != null ? "eval.answer_field" : "data.answer_field");
    }

    /**
     * The name a held-out set's metrics carry: its file or folder name without the extension, with its
     * folder's name before it when another set has the same name (gsm8k/test and math/test).
     */
    static String name(String spec, List<String> all) {
        String n = base(spec);
        boolean clash = all.stream().filter(o -> base(o).equals(n)).count() > 1;
        Path parent = Path.of(spec.replace("bundled:", "")).getParent();
        return clash && parent != null && parent.getFileName() != null ? parent.getFileName() + "/" + n : n;
    }

    private static String base(String spec) {
        Path p = Path.of(spec.replace("bundled:", "")).getFileName();
        return p == null ? spec : p.toString().replaceFirst("\\.(jsonl|json|parquet)$", "");
    }

    public Map<String, List<Example>> evalSets() {
        Map<String, List<Example>> m = new LinkedHashMap<>();
        eval.forEach((k, v) -> m.put(k, v.examples()));
        return m;
    }

    /**
     * Renders every prompt (so a prompt over data.max_prompt_tokens, or one the chat template refuses, fails
     * now, before the run folder is claimed and --overwrite removes anything; with data.overlong_prompts:
     * filter, a prompt over it drops its row instead) and returns one line per set: rows, the field mapping,
     * the rows dropped per file, the first prompt as the model sees it and its gold answer.
     */
    public List<String> render(Prompts prompts) {
        List<String> lines = new ArrayList<>();
        Fitted t = fit("train", train, Integer.MAX_VALUE, prompts);
        train = t.set();
        lines.add(line("train", t, prompts));
        for (var e : evalRead.entrySet()) {
            Fitted f = filter ? fit("eval " + e.getKey(), e.getValue(), maxExamples, prompts)
                    : fit("eval " + e.getKey(), eval.get(e.getKey()), Integer.MAX_VALUE, prompts);
            eval.put(e.getKey(), f.set());
            lines.add(line("eval " + e.getKey(), f, prompts));
        }
        return lines;
    }

    /** A set with the rows whose prompts fit, and what was dropped ("" when nothing was). */
    private record Fitted(Dataset.Loaded set, String dropped) {}

    /** How many distinct prompts are rendered and encoded together (the tokenizer's batch encode spreads them over the cores). */
    static final int BATCH = 1024;
    private static final int UNMEASURED = -1, PENDING = -2, FAILED = -3;

    /**
     * The first {@code limit} rows of {@code l} whose prompts fit data.max_prompt_tokens. Without filter every
     * row must fit; with it the others are dropped, counted per file. Each distinct prompt is rendered and
     * measured once, {@link #BATCH} at a time in the order the rows first hold them, and the rows are then
     * decided in order: the first row that is refused (a prompt that cannot be rendered, an empty or an
     * overlong one) is the one named, as if every row were taken one by one.
     */
    private Fitted fit(String what, Dataset.Loaded l, int limit, Prompts prompts) {
        Rows rows = l.examples();
        int[] tokens = new int[rows.prompts()];
        java.util.Arrays.fill(tokens, UNMEASURED);
        UserError failed = null; // the error of the one prompt marked FAILED
        int[] kept = new int[Math.min(rows.size(), limit)];
        int keep = 0, dropped = 0, shortest = Integer.MAX_VALUE;
        Map<String, Integer> perFile = new LinkedHashMap<>();
        java.util.BitSet distinct = new java.util.BitSet(tokens.length);
        for (int i = 0; i < rows.size(); i++) {
            distinct.set(rows.promptOf(i));
        }
        try (Progress bar = Progress.start("tokenize", distinct.cardinality(), "prompts")) {
            int i = 0;
            while (i < rows.size() && keep < limit) {
                // the next window of rows: up to BATCH prompts not measured yet, each taken from the first row holding it
                List<Example> batch = new ArrayList<>();
                List<Integer> ids = new ArrayList<>();
                int end = i;
                for (; end < rows.size() && batch.size() < BATCH; end++) {
                    int p = rows.promptOf(end);
                    if (tokens[p] == UNMEASURED) {
                        tokens[p] = PENDING;
                        batch.add(rows.get(end));
                        ids.add(p);
                    }
                }
                Prompts.Measured m = prompts.measure(batch);
                for (int k = 0; k < ids.size(); k++) {
                    tokens[ids.get(k)] = k < m.tokens().length ? m.tokens()[k] : k == m.tokens().length ? FAILED : UNMEASURED;
                }
                if (m.error() != null) {
                    failed = m.error();
                }
                bar.step(m.tokens().length);
                for (; i < end && keep < limit; i++) {
                    int n = tokens[rows.promptOf(i)];
                    if (n == FAILED) { // the first row holding the prompt: the one its error names
                        throw failed;
                    }
                    if (n < 0) { // a prompt left unmeasured has its first row after the failed one's, which threw
                        throw new IllegalStateException(rows.where(i) + ": prompt not measured");
                    }
                    if (n == 0) {
                        throw Prompts.empty(rows.where(i));
                    }
                    if (n <= prompts.maxTokens()) {
                        kept[keep++] = i;
                    } else if (!filter) {
                        throw prompts.overlong(rows.where(i), n);
                    } else {
                        dropped++;
                        shortest = Math.min(shortest, n);
                        perFile.merge(rows.fileOf(i), 1, Integer::sum);
                    }
                }
            }
        }
        if (keep == 0) {
            throw new UserError("data " + what + ": " + l.spec() + ": every prompt is over data.max_prompt_tokens=" + prompts.maxTokens()
                    + " (" + rows(dropped) + ", the shortest " + shortest + " tokens), so data.overlong_prompts: filter leaves"
                    + " none; raise data.max_prompt_tokens or give shorter prompts");
        }
        if (keep == rows.size()) {
            return new Fitted(l, "");
        }
        List<String> files = new ArrayList<>();
        perFile.forEach((f, n) -> files.add(f + ": " + n));
        return new Fitted(new Dataset.Loaded(l.spec(), rows.keep(java.util.Arrays.copyOf(kept, keep)), l.files(), l.mapping()),
                dropped == 0 ? "" : "; dropped " + rows(dropped) + " with a prompt over data.max_prompt_tokens=" + prompts.maxTokens()
                + " (" + String.join(", ", files) + ")");
    }

    private static String rows(int n) {
        return n + (n == 1 ? " row" : " rows");
    }

    private static String line(String what, Fitted f, Prompts prompts) {
        Dataset.Loaded l = f.set();
        Example first = l.examples().get(0);
        return "data " + what + ": " + l.spec() + ": " + l.describe() + f.dropped() + "; first prompt \"" + shorten(prompts.text(first))
                + "\", gold \"" + shorten(first.goldAnswer()) + "\"";
    }

    /** One line of at most ~160 characters: newlines shown as ⏎, the middle elided (the end of a prompt matters too). */
    static String shorten(String s) {
        String t = s.replace("\r", "").replace("\n", "⏎");
        return t.length() <= 160 ? t : t.substring(0, 90) + " … " + t.substring(t.length() - 60);
    }
}
