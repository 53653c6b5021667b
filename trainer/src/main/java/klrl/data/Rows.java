package klrl.data;

import java.util.AbstractList;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.RandomAccess;
import klrl.model.ChatTemplate;

/**
 * A data set's rows, kept compactly for sets of millions of rows: each distinct prompt once (DAPO-Math-17k
 * repeats each of its 17,917 problems 100 times), each distinct gold answer and {@link Example.Labels} once,
 * and per row four ints (its prompt, gold answer, labels and line): 16 bytes a row besides the distinct
 * values. The {@link Example} of a row is made when the row is asked for, the same as the row read.
 */
public final class Rows extends AbstractList<Example> implements RandomAccess {
    /** What the rows of a set and its subsets share: the distinct values and the files. */
    private record Table(String[] questions, List<ChatTemplate.Message>[] messages, String[] golds, Example.Labels[] labels,
                         String[] files) {}

    private final Table t;
    private final int[] prompt, gold, label, line;
    /** fileEnd[f]: the first row after file f's rows (rows stay in file order, in every subset too). */
    private final int[] fileEnd;

    private Rows(Table t, int[] prompt, int[] gold, int[] label, int[] line, int[] fileEnd) {
        this.t = t;
        this.prompt = prompt;
        this.gold = gold;
        this.label = label;
        this.line = line;
        this.fileEnd = fileEnd;
    }

    @Override
    public int size() {
        return prompt.length;
    }

    @Override
    public Example get(int i) {
        int p = prompt[i];
        return new Example(t.questions[p], t.messages[p], t.golds[gold[i]], where(i), t.labels[label[i]]);
    }

    /** Row i's place, "file:N" (N counted from 1: a JSONL line, a JSON array's element, a parquet row). */
    public String where(int i) {
        return t.files[fileIndex(i)] + ":" + line[i];
    }

    /** The file row i came from, as the set names it. */
    public String fileOf(int i) {
        return t.files[fileIndex(i)];
    }

    private int fileIndex(int i) {
        java.util.Objects.checkIndex(i, size());
        int f = Arrays.binarySearch(fileEnd, i);
        f = f >= 0 ? f + 1 : -f - 1; // the first file whose end is past i
        while (fileEnd[f] == i) { // files that kept no rows end where the next begins
            f++;
        }
        return f;
    }

    /** Row i's prompt: the same number for every row with the same prompt, below {@link #prompts()}. */
    public int promptOf(int i) {
        return prompt[i];
    }

    /** How many distinct prompts the set these rows came from holds. */
    public int prompts() {
        return t.questions.length;
    }

    /** The first n rows. */
    public Rows head(int n) {
        if (n >= size()) {
            return this;
        }
        return keep(java.util.stream.IntStream.range(0, n).toArray());
    }

    /** The rows at these indices, which ascend. */
    public Rows keep(int[] rows) {
        int[] p = new int[rows.length], g = new int[rows.length], l = new int[rows.length], n = new int[rows.length];
        int[] ends = new int[fileEnd.length];
        int f = 0;
        for (int k = 0; k < rows.length; k++) {
            int i = rows[k];
            if (k > 0 && i <= rows[k - 1]) {
                throw new IllegalArgumentException("rows must ascend");
            }
            p[k] = prompt[i];
            g[k] = gold[i];
            l[k] = label[i];
            n[k] = line[i];
            while (fileEnd[f] <= i) {
                ends[f++] = k;
            }
        }
        while (f < ends.length) {
            ends[f++] = rows.length;
        }
        return new Rows(t, p, g, l, n, ends);
    }

    /** Heap bytes of the per-row arrays (16 a row) and of the distinct values (strings at one byte a Latin-1 character, two else). */
    public long bytes() {
        long b = 16L * size() + 4L * fileEnd.length;
        for (int p = 0; p < t.questions.length; p++) {
            b += text(t.questions[p]);
            if (t.messages[p] != null) {
                for (ChatTemplate.Message m : t.messages[p]) {
                    b += (m.content() == t.questions[p] ? 0 : text(m.content())) + text(m.role()) + 16;
                }
            }
        }
        for (String g : t.golds) {
            b += text(g);
        }
        return b;
    }

    private static long text(String s) {
        return s == null ? 0 : 40 + (s.chars().allMatch(c -> c < 256) ? s.length() : 2L * s.length());
    }

    /** Collects rows file by file; rows with the same prompt, gold answer or labels share them. */
    static final class Builder {
        private final Map<Object, Integer> prompts = new HashMap<>();
        private final List<String> questions = new ArrayList<>();
        private final List<List<ChatTemplate.Message>> messages = new ArrayList<>();
        private final Map<String, Integer> golds = new HashMap<>();
        private final List<String> goldList = new ArrayList<>();
        private final Map<Example.Labels, Integer> labels = new HashMap<>();
        private final List<Example.Labels> labelList = new ArrayList<>();
        private final List<String> files = new ArrayList<>();
        private final Ints fileEnd = new Ints(), prompt = new Ints(), gold = new Ints(), label = new Ints(), line = new Ints();

        /** A row of {@code file} (the last file added to, or the next), at its line (or row) n. */
        void add(Example e, String file, int n) {
            if (files.isEmpty() || !files.get(files.size() - 1).equals(file)) {
                if (!files.isEmpty()) {
                    fileEnd.add(prompt.n);
                }
                files.add(file);
            }
            // a message list and a plain-text prompt never share a key: a List never equals a String
            Object key = e.messages() != null ? e.messages() : e.question();
            Integer p = prompts.get(key);
            if (p == null) {
                p = questions.size();
                prompts.put(key, p);
                questions.add(e.question());
                messages.add(e.messages());
            }
            prompt.add(p);
            gold.add(golds.computeIfAbsent(e.gold(), g -> {
                goldList.add(g);
                return goldList.size() - 1;
            }));
            label.add(labels.computeIfAbsent(e.labels(), l -> {
                labelList.add(l);
                return labelList.size() - 1;
            }));
            line.add(n);
        }

        int size() {
            return prompt.n;
        }

        @SuppressWarnings("unchecked")
        Rows build() {
            if (!files.isEmpty()) {
                fileEnd.add(prompt.n);
            }
            Table t = new Table(questions.toArray(String[]::new), messages.toArray(List[]::new), goldList.toArray(String[]::new),
                    labelList.toArray(Example.Labels[]::new), files.toArray(String[]::new));
            return new Rows(t, prompt.array(), gold.array(), label.array(), line.array(), fileEnd.array());
        }
    }

    /** A growing int array. */
    private static final class Ints {
        int[] a = new int[16];
        int n;

        void add(int v) {
            if (n == a.length) {
                a = Arrays.copyOf(a, a.length + (a.length >> 1));
            }
            a[n++] = v;
        }

        int[] array() {
            return Arrays.copyOf(a, n);
        }
    }
}
