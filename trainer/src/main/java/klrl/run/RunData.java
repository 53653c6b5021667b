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

/**
 * A run's data: the training set and the held-out sets, read and checked before any model loads
 * (a bad file or field costs seconds, not a 7B load), then rendered once the tokenizer is there, with
 * one line per set saying what was read and what the model will see.
 */
public final class RunData {
    public final Dataset.Loaded train;
    /** Held-out sets by name (the file's name without its extension), at most eval.max_examples rows each. */
    final Map<String, Dataset.Loaded> eval = new LinkedHashMap<>();

    /** Reads every set; fields follow data.* (eval files: eval.* when set), bundled sets their own. */
    public RunData(TrainConfig cfg) {
        var d = cfg.data();
        var e = cfg.eval();
        this.train = Dataset.read(d.train() != null ? d.train() : Dataset.BUNDLED_TRAIN, d.promptField(), d.answerField());
        List<String> specs = Dataset.specs(d.eval() != null ? d.eval() : Dataset.BUNDLED_TEST);
        for (String spec : specs) {
            Dataset.Loaded l = readEval(cfg, spec);
            String name = name(spec, specs);
            if (eval.containsKey(name)) {
                throw new klrl.util.UserError("data.eval names two sets " + name + "; give them files or folders of different names");
            }
            eval.put(name, new Dataset.Loaded(l.spec(), l.examples().subList(0, Math.min(l.examples().size(), e.maxExamples())),
                    l.files(), l.mapping()));
        }
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
     * now, before the run folder is claimed and --overwrite removes anything) and returns one line per set:
     * rows, the field mapping, the first prompt as the model sees it and its gold answer.
     */
    public List<String> render(Prompts prompts) {
        List<String> lines = new ArrayList<>();
        lines.add(line("train", train, prompts));
        eval.forEach((name, l) -> lines.add(line("eval " + name, l, prompts)));
        return lines;
    }

    private static String line(String what, Dataset.Loaded l, Prompts prompts) {
        l.examples().forEach(prompts::ids);
        Example first = l.examples().get(0);
        return "data " + what + ": " + l.spec() + ": " + l.describe() + "; first prompt \"" + shorten(prompts.text(first))
                + "\", gold \"" + shorten(first.goldAnswer()) + "\"";
    }

    /** One line of at most ~160 characters: newlines shown as ⏎, the middle elided (the end of a prompt matters too). */
    static String shorten(String s) {
        String t = s.replace("\r", "").replace("\n", "⏎");
        return t.length() <= 160 ? t : t.substring(0, 90) + " … " + t.substring(t.length() - 60);
    }
}
