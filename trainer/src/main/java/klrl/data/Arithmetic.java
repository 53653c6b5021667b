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
 * The bundled synthetic task: "a+b" with two-digit operands; the answer is their sum. Train and
 * test are disjoint pairs drawn from one seeded permutation, so the data never change.
 */
public final class Arithmetic {
    private Arithmetic() {}

    public static final int MAX = 60;

    /** All pairs (a, b) in [0, MAX)², shuffled by a fixed seed, split into test (first) and train. */
    public static List<Example>[] generate(int testSize) {
        List<int[]> pairs = new ArrayList<>();
        for (int a = 0; a < MAX; a++) {
            for (int b = 0; b < MAX; b++) {
                pairs.add(new int[] {a, b});
            }
        }
        SplittableRandom r = new SplittableRandom(20261125);
        for (int i = pairs.size() - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            int[] t = pairs.get(i);
            pairs.set(i, pairs.get(j));
            pairs.set(j, t);
        }
        @SuppressWarnings("unchecked")
        List<Example>[] out = new List[] {new ArrayList<>(), new ArrayList<>()};
        for (int i = 0; i < pairs.size(); i++) {
            int[] p = pairs.get(i);
            out[i < testSize ? 1 : 0].add(new Example(p[0] + "+" + p[1], Integer.toString(p[0] + p[1]), "arith"));
        }
        return out;
    }

    /** Writes arith-train.jsonl and arith-test.jsonl ({"question","answer"} rows). */
    public static void write(Path dir, int testSize) throws IOException {
        Files.createDirectories(dir);
        List<Example>[] sets = generate(testSize);
        String[] names = {"arith-train.jsonl", "arith-test.jsonl"};
        for (int s = 0; s < 2; s++) {
            StringBuilder sb = new StringBuilder();
            for (Example e : sets[s]) {
                ObjectNode o = Json.MAPPER.createObjectNode();
                o.put("question", e.question());
                o.put("answer", e.gold());
                sb.append(Json.write(o)).append('\n');
            }
            Files.writeString(dir.resolve(names[s]), sb.toString());
        }
    }
}
