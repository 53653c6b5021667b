package klrl.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import klrl.TestPaths;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.data.Example;
import klrl.data.Prompts;
import klrl.model.Tokenizer;
import klrl.util.UserError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Held-out sets are named by their file or folder, with the folder before it when two share a name; a
 * prompt over data.max_prompt_tokens refuses the run (data.overlong_prompts: error) or drops its row,
 * counted per file in the set's start-up line (filter), in the training and held-out sets alike.
 */
class RunDataTest {
    @TempDir Path tmp;

    @Test
    void namesOfHeldOutSetsDoNotClash() {
        List<String> verl = List.of("/d/gsm8k/test.parquet", "/d/math/test.parquet", "bundled:arith-test", "/d/aime24.jsonl");
        assertEquals("gsm8k/test", RunData.name(verl.get(0), verl));
        assertEquals("math/test", RunData.name(verl.get(1), verl));
        assertEquals("arith-test", RunData.name(verl.get(2), verl));
        assertEquals("aime24", RunData.name(verl.get(3), verl));
        assertEquals("deepscaler", RunData.name("/d/deepscaler.json", List.of("/d/deepscaler.json")));
    }

    /** About 12k tokens of Qwen2.5's, then the question. */
    static final String LONG = "The quick brown fox jumps over the lazy dog. ".repeat(1200) + "What is 1 + 1?";

    static String row(String problem, String answer) {
        return "{\"problem\": \"" + problem + "\", \"answer\": \"" + answer + "\"}";
    }

    @Test
    void overlongPromptsAreRefusedOrDroppedPerFileInTrainingAndHeldOutSets() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("set"));
        Files.writeString(dir.resolve("a.jsonl"), row("What is 2 + 3?", "5") + "\n" + row(LONG, "2") + "\n" + row("What is 4 + 4?", "8") + "\n");
        Files.writeString(dir.resolve("b.json"), "[" + row("What is 6 + 1?", "7") + ",\n" + row("What is 9 + 9?", "18") + ",\n"
                + row(LONG, "2") + "]\n");
        Map<String, Object> set = Map.of("data.train", dir.toString(), "data.eval", dir.toString(), "eval.max_examples", 3);
        try (Tokenizer qwen = Tokenizer.load(TestPaths.model("qwen2.5"))) {
            // error, the default: the run is refused naming the row, as before
            TrainConfig error = ConfigLoader.load(null, set);
            Prompts prompts = new Prompts(qwen, error.data().promptFormat());
            UserError e = assertThrows(UserError.class, () -> new RunData(error).render(prompts));
            Matcher m = Pattern.compile(Pattern.quote(dir.resolve("a.jsonl") + ":2: prompt has ") + "(\\d+)"
                    + Pattern.quote(" tokens, more than data.max_prompt_tokens=256")).matcher(e.getMessage());
            assertTrue(m.matches(), e.getMessage());
            assertTrue(Integer.parseInt(m.group(1)) > 12_000, m.group(1)); // a 12k-token prompt

            // filter: the long rows dropped, counted per file; the held-out set takes its 3 rows among those that fit
            var with = new java.util.HashMap<>(set);
            with.put("data.overlong_prompts", "filter");
            RunData d = new RunData(ConfigLoader.load(null, with));
            List<String> lines = d.render(prompts);
            assertEquals("data train: " + dir + ": 4 rows from 2 files, MATH layout: prompt ← problem, gold ← answer; dropped 2 rows"
                    + " with a prompt over data.max_prompt_tokens=256 (" + dir.resolve("a.jsonl") + ": 1, " + dir.resolve("b.json")
                    + ": 1); first prompt", lines.get(0).substring(0, lines.get(0).indexOf("; first prompt") + 14));
            assertEquals("data eval set: " + dir + ": 3 rows from 2 files, MATH layout: prompt ← problem, gold ← answer; dropped 1 row"
                    + " with a prompt over data.max_prompt_tokens=256 (" + dir.resolve("a.jsonl") + ": 1); first prompt",
                    lines.get(1).substring(0, lines.get(1).indexOf("; first prompt") + 14));
            assertEquals(List.of("5", "8", "7", "18"), d.train.examples().stream().map(Example::gold).toList());
            assertEquals(List.of("5", "8", "7"), d.evalSets().get("set").stream().map(Example::gold).toList());

            // every row dropped: one line, not an empty run
            Path allLong = tmp.resolve("long.jsonl");
            Files.writeString(allLong, row(LONG, "2") + "\n");
            var all = new java.util.HashMap<>(with);
            all.put("data.train", allLong.toString());
            UserError none = assertThrows(UserError.class, () -> new RunData(ConfigLoader.load(null, all)).render(prompts));
            assertTrue(none.getMessage().matches(Pattern.quote("data train: " + allLong + ": every prompt is over"
                    + " data.max_prompt_tokens=256 (1 row, the shortest ") + "\\d+" + Pattern.quote(" tokens), so"
                    + " data.overlong_prompts: filter leaves none; raise data.max_prompt_tokens or give shorter prompts")),
                    none.getMessage());
        }
        // a value other than error or filter names the setting
        UserError bad = assertThrows(UserError.class, () -> ConfigLoader.load(null, Map.of("data.overlong_prompts", "skip")));
        assertEquals("tiny-cpu: data.overlong_prompts must be error (refuse a prompt over data.max_prompt_tokens) or filter"
                + " (drop its row), got 'skip'", bad.getMessage());
    }

    /**
     * Prompts are measured many at a time, each distinct one once, yet the row named is the first refused in
     * order, whatever refuses it (too long, or a message list with data.chat_template false) and however the
     * rows repeat their prompts; with filter a prompt that cannot be rendered still refuses the run.
     */
    @Test
    void theFirstRefusedRowIsNamedWhateverRefusesIt() throws Exception {
        String ok = "{\"prompt\": \"What is 2 + 3?\", \"solution\": \"5\"}", longOne = "{\"prompt\": \"" + LONG + "\", \"solution\": \"2\"}",
                list = "{\"prompt\": [{\"role\": \"user\", \"content\": \"What is 1 + 1?\"}], \"solution\": \"2\"}";
        try (Tokenizer qwen = Tokenizer.load(TestPaths.model("qwen2.5"))) {
            for (String mode : new String[] {"error", "filter"}) {
                // rows 1–1500 fit (one prompt, or 1,030 distinct ones: the refused rows then fall in the second
                // batch of 1,024 prompts), then a long one, then a list; and the other way round
                for (int distinct : new int[] {1, 1030})
                for (boolean longFirst : new boolean[] {true, false}) {
                    Path f = tmp.resolve(mode + longFirst + distinct + ".jsonl");
                    List<String> rows = new java.util.ArrayList<>();
                    for (int i = 0; i < 1500; i++) {
                        rows.add(distinct == 1 ? ok : ok.replace("2 + 3", (i % distinct) + " + 3"));
                    }
                    rows.add(longFirst ? longOne : list);
                    rows.add(ok);
                    rows.add(longFirst ? list : longOne);
                    Files.write(f, rows);
                    TrainConfig cfg = ConfigLoader.load(null, Map.of("data.train", f.toString(), "data.chat_template", false,
                            "data.overlong_prompts", mode));
                    Prompts prompts = new Prompts(qwen, cfg.data().promptFormat());
                    UserError e = assertThrows(UserError.class, () -> new RunData(cfg).render(prompts));
                    String expected = longFirst && mode.equals("error") ? f + ":1501: prompt has "
                            : f + ":" + (longFirst ? 1503 : 1501) + ": the prompt is a message list";
                    assertTrue(e.getMessage().startsWith(expected), mode + " " + longFirst + " " + distinct + ": " + e.getMessage());
                }
            }
        }
    }
}
