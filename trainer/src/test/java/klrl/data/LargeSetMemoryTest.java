package klrl.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A set of many rows repeating few prompts (DAPO-Math-17k's shape: each problem 100 times) is read within
 * a heap far smaller than its rows would fill as JSON: rows are never all in memory at once, and each
 * distinct prompt is kept once.
 */
@Tag("e2e") // a JVM of its own, with a small heap
class LargeSetMemoryTest {
    @TempDir Path tmp;

    static final int ROWS = 400_000, PROBLEMS = 4_000;
    /** About 300 MB of JSON trees for these rows; the reader needs a few MB. */
    static final String HEAP = "-Xmx96m";

    /** Reads the set named by args[0] and prints its row count and its first and last rows' places. */
    public static void main(String[] args) {
        List<Example> rows = Dataset.load(args[0], null, null);
        System.out.println(rows.size() + " " + rows.get(0).source() + " " + rows.get(rows.size() - 1).source() + " "
                + rows.get(rows.size() - 1).gold());
    }


    @Test
    void manyRowsOfFewPromptsAreReadInASmallHeap() throws Exception {
        Path f = tmp.resolve("dapo-like.jsonl");
        try (BufferedWriter w = Files.newBufferedWriter(f, StandardCharsets.UTF_8)) {
            for (int i = 0; i < ROWS; i++) {
                int k = i % PROBLEMS;
                w.write("{\"data_source\": \"math_dapo\", \"prompt\": [{\"content\": \"Solve the following math problem step by step."
                        + " Problem " + k + ": find the remainder when " + (k * 7919L) + " is divided by 97.\", \"role\": \"user\"}],"
                        + " \"ability\": \"MATH\", \"reward_model\": {\"ground_truth\": \"" + (k * 7919L % 97) + "\", \"style\": \"rule\"},"
                        + " \"extra_info\": {\"index\": \"row-" + i + "\"}}\n");
            }
        }
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), HEAP,
                "-cp", klrl.TestPaths.classPath(), LargeSetMemoryTest.class.getName(), f.toString()));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        pb.environment().put("KLRL_PROGRESS", "0");
        Process p = pb.start();
        var output = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            try {
                return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            } catch (java.io.IOException e) {
                return e.toString();
            }
        });
        boolean ended = p.waitFor(300, TimeUnit.SECONDS);
        if (!ended) {
            p.destroyForcibly().waitFor();
        }
        String out = output.get();
        assertTrue(ended, "the child read the set for over 300 s: " + out);
        assertEquals(0, p.exitValue(), out);
        int last = ROWS - 1;
        assertEquals(ROWS + " " + f + ":1 " + f + ":" + ROWS + " " + ((last % PROBLEMS) * 7919L % 97), out.strip());
    }
}
