package klrl.data;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import klrl.util.Json;

/**
 * The bundled synthetic task and its out-of-domain families. RL trains on "a+b" (two-digit operands
 * below {@link #MAX}); three held-out families are never trained on by RL and measure transfer and
 * forgetting:
 * <ul>
 *   <li>{@code ood-sub}: another operation, "a-b" with a ≥ b;</li>
 *   <li>{@code ood-three}: a longer expression, "a+b+c" with operands below 30;</li>
 *   <li>{@code ood-words}: another phrasing, "a plus b", on the pairs of the held-out sums.</li>
 * </ul>
 * The warm-up of the built-in model also sees a few hundred examples of each family (from pools
 * disjoint from their test sets, in {@code warmup-families}), so the reference model starts with
 * partial skill on them, as a pretrained model has on neighbouring domains. Everything comes from
 * fixed seeds, so the files never change.
 */
public final class Arithmetic {
    private Arithmetic() {}

    public static final int MAX = 60;
    /** Examples per out-of-domain test set, and per family in the warm-up pool. */
    public static final int OOD_TEST = 200, WARMUP_PER_FAMILY = 1000;
    public static final List<String> OOD_SETS = List.of("ood-sub", "ood-three", "ood-words");

    /** All pairs (a, b) in [0, MAX)², shuffled by a fixed seed, split into test (first) and train. */
    public static List<Example>[] generate(int testSize) {
        List<int[]> pairs = shuffled(pairs(false), 20261125);
        @SuppressWarnings("unchecked")
        List<Example>[] out = new List[] {new ArrayList<>(), new ArrayList<>()};
        for (int i = 0; i < pairs.size(); i++) {
            int[] p = pairs.get(i);
            out[i < testSize ? 1 : 0].add(new Example(p[0] + "+" + p[1], Integer.toString(p[0] + p[1]), "arith"));
        }
        return out;
    }

    /**
     * The three families: for each, its test set (index 0) and its warm-up pool (index 1), in the
     * order of {@link #OOD_SETS}.
     */
    public static List<List<Example>[]> families(int testSize) {
        List<List<Example>[]> out = new ArrayList<>();
        // another operation: a-b over the pairs with a ≥ b
        List<Example> sub = new ArrayList<>();
        for (int[] p : shuffled(pairs(true), 20261201)) {
            sub.add(new Example(p[0] + "-" + p[1], Integer.toString(p[0] - p[1]), "ood-sub"));
        }
        out.add(split(sub));
        // a longer expression: a+b+c
        List<int[]> triples = new ArrayList<>();
        for (int a = 0; a < 30; a++) {
            for (int b = 0; b < 30; b++) {
                for (int c = 0; c < 30; c++) {
                    triples.add(new int[] {a, b, c});
                }
            }
        }
        List<Example> three = new ArrayList<>();
        for (int[] t : shuffled(triples, 20261202)) {
            three.add(new Example(t[0] + "+" + t[1] + "+" + t[2], Integer.toString(t[0] + t[1] + t[2]), "ood-three"));
        }
        out.add(split(three));
        // another phrasing: the held-out sums' pairs as words (test); train pairs for the warm-up
        List<Example>[] sums = generate(testSize);
        List<Example> wordsTest = new ArrayList<>(), wordsPool = new ArrayList<>();
        for (Example e : sums[1].subList(0, OOD_TEST)) {
            wordsTest.add(words(e));
        }
        for (Example e : shuffled(sums[0], 20261203).subList(0, WARMUP_PER_FAMILY)) {
            wordsPool.add(words(e));
        }
        @SuppressWarnings("unchecked")
        List<Example>[] w = new List[] {wordsTest, wordsPool};
        out.add(w);
        return out;
    }

    private static Example words(Example sum) {
        return new Example(sum.question().replace("+", " plus "), sum.gold(), "ood-words");
    }

    @SuppressWarnings("unchecked")
    private static List<Example>[] split(List<Example> all) {
        return new List[] {new ArrayList<>(all.subList(0, OOD_TEST)),
                new ArrayList<>(all.subList(OOD_TEST, OOD_TEST + WARMUP_PER_FAMILY))};
    }

    private static List<int[]> pairs(boolean ordered) {
        List<int[]> pairs = new ArrayList<>();
        for (int a = 0; a < MAX; a++) {
            for (int b = 0; b < (ordered ? a + 1 : MAX); b++) {
                pairs.add(new int[] {a, b});
            }
        }
        return pairs;
    }

    private static <T> List<T> shuffled(List<T> xs, long seed) {
        List<T> out = new ArrayList<>(xs);
        SplittableRandom r = new SplittableRandom(seed);
        for (int i = out.size() - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            T t = out.get(i);
            out.set(i, out.get(j));
            out.set(j, t);
        }
        return out;
    }

    /**
     * Writes arith-train / arith-test, the three ood-* test sets and warmup-families
     * ({"question","answer"} rows).
     */
    public static void write(Path dir, int testSize) throws IOException {
        Files.createDirectories(dir);
        List<Example>[] sets = generate(testSize);
        writeRows(dir.resolve("arith-train.jsonl"), sets[0]);
        writeRows(dir.resolve("arith-test.jsonl"), sets[1]);
        List<List<Example>[]> fams = families(testSize);
        List<Example> pool = new ArrayList<>();
        for (int f = 0; f < fams.size(); f++) {
            writeRows(dir.resolve(OOD_SETS.get(f) + ".jsonl"), fams.get(f)[0]);
            pool.addAll(fams.get(f)[1]);
        }
        writeRows(dir.resolve("warmup-families.jsonl"), shuffled(pool, 20261204));
    }

    private static void writeRows(Path file, List<Example> rows) throws IOException {
        StringBuilder sb = new StringBuilder();
        for (Example e : rows) {
            ObjectNode o = Json.MAPPER.createObjectNode();
            o.put("question", e.question());
            o.put("answer", e.gold());
            sb.append(Json.write(o)).append('\n');
        }
        Files.writeString(file, sb.toString());
    }
}
