package klrl.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import klrl.cli.Main;
import klrl.config.ConfigLoader;
import klrl.util.Json;
import klrl.util.UserError;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Runs on the data people bring: verl's parquet (system + user prompts, shards), read with no field
 * settings, trains on the built-in model with the prompts rendered by its chat template exactly as
 * {@code template --messages} renders them; bad data fails before any model loads; a run resumes from
 * another working folder.
 */
@Tag("e2e") // whole runs and subprocesses: after the unit tests
class DataRunTest {
    static final Path DATA = Path.of("src/test/resources/data").toAbsolutePath();
    @TempDir Path tmp;

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
    }

    @Test
    void verlParquetWithSystemPromptsTrainsAndSaysWhatItRead() throws Exception {
        Path out = tmp.resolve("run");
        List<String> log = new ArrayList<>();
        var cfg = TrainerTest.small(out, Map.of("data.train", DATA.resolve("verl-system.parquet").toString(),
                "data.eval", DATA.resolve("shards") + "," + DATA.resolve("trl.jsonl"), "train.max_steps", 2, "train.batch_size", 3,
                "train.mini_batch_size", 3, "train.samples_every", 1, "train.samples_prompts", 3, "eval.before_start", true));
        try (Trainer t = new Trainer(cfg, null, log::add)) {
            t.run(s -> { });
        }
        String sys = "<|im_start|>system\nYou are a careful calculator. Put the final answer in \\boxed{}.<|im_end|>\n";
        String first = sys + "<|im_start|>user\nWhat is 17 + 25?<|im_end|>\n<|im_start|>assistant\n";
        // one line per set before the weights load: rows, layout, the first prompt as the model sees it, its gold
        assertTrue(log.contains("data train: " + DATA.resolve("verl-system.parquet") + ": 3 rows, verl layout: prompt ← prompt,"
                + " gold ← reward_model.ground_truth; first prompt \"" + first.replace("\n", "⏎") + "\", gold \"42\""), log.toString());
        assertTrue(log.stream().anyMatch(l -> l.startsWith("data eval shards: " + DATA.resolve("shards") + ": 3 rows from 2 files,"
                + " verl layout")), log.toString());
        assertTrue(log.stream().anyMatch(l -> l.startsWith("data eval trl: ") && l.contains("TRL conversational layout")), log.toString());
        // the prompts fed to the model are what `template --messages` renders for the rows' message lists
        Path msgs = tmp.resolve("m.json");
        Files.writeString(msgs, "[{\"role\":\"system\",\"content\":\"You are a careful calculator. Put the final answer in"
                + " \\\\boxed{}.\"},{\"role\":\"user\",\"content\":\"What is 8 + 13?\"}]");
        ByteArrayOutputStream rendered = new ByteArrayOutputStream();
        PrintStream old = System.out;
        try {
            System.setOut(new PrintStream(rendered, true, StandardCharsets.UTF_8));
            assertEquals(0, Main.run("template", "--model", TrainerTest.base.toString(), "--messages", msgs.toString()));
        } finally {
            System.setOut(old);
        }
        List<JsonNode> samples = new ArrayList<>();
        for (String l : Files.readAllLines(out.resolve("samples.jsonl"))) {
            samples.add(Json.MAPPER.readTree(l));
        }
        assertFalse(samples.isEmpty());
        java.util.Set<String> prompts = new java.util.TreeSet<>();
        for (JsonNode s : samples) {
            prompts.add(s.get("prompt").asText());
            String q = s.get("prompt").asText();
            String gold = q.contains("17 + 25") ? "42" : q.contains("8 + 13") ? "21" : "74";
            assertEquals(gold, s.get("gold").asText());
            assertEquals(gold, s.get("gold_raw").asText());
        }
        assertTrue(prompts.contains(first), prompts.toString());
        String second = rendered.toString(StandardCharsets.UTF_8);
        assertEquals(sys + "<|im_start|>user\nWhat is 8 + 13?<|im_end|>\n<|im_start|>assistant\n", second);
        assertTrue(prompts.contains(second), second + " not in " + prompts);
        // trained: two step lines, an eval line per set
        List<JsonNode> m = TrainerTest.metrics(out);
        assertEquals(2, m.stream().filter(n -> n.has("reward_mean")).count());
        assertTrue(m.stream().anyMatch(n -> "shards".equals(n.path("eval_set").asText())), m.toString());
        // the saved config's paths are absolute
        JsonNode saved = ConfigLoader.YAML.readTree(out.resolve("config.yaml").toFile());
        assertEquals(DATA.resolve("verl-system.parquet").toString(), saved.get("data").get("train").asText());
        assertEquals(out.toAbsolutePath().toString(), saved.get("output_dir").asText());
    }

    @Test
    void aTwelveThousandTokenPromptIsDroppedWithFilterAndTheRunTrainsOnTheRest() throws Exception {
        // the bundled sums as a JSONL file, with one long text as its row 3
        List<String> rows = new ArrayList<>();
        try (var in = DataRunTest.class.getResourceAsStream("/data/arith-train.jsonl")) {
            new String(in.readAllBytes(), StandardCharsets.UTF_8).lines().limit(8).forEach(rows::add);
        }
        String text = "12+34 is asked after a long story. ".repeat(600);
        rows.add(2, Json.MAPPER.createObjectNode().put("question", text + "17+25").put("answer", "42").toString());
        Path data = tmp.resolve("long.jsonl");
        Files.write(data, rows);
        // error, the default: refused naming the row before any model loads, as before
        var error = TrainerTest.small(tmp.resolve("refused"), Map.of("data.train", data.toString()));
        UserError e = assertThrows(UserError.class, () -> new Trainer(error, null, s -> { }).close());
        java.util.regex.Matcher m = java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(data + ":3: prompt has ") + "(\\d+)"
                + java.util.regex.Pattern.quote(" tokens, more than data.max_prompt_tokens=256")).matcher(e.getMessage());
        assertTrue(m.matches(), e.getMessage());
        assertTrue(Integer.parseInt(m.group(1)) > 12_000, m.group(1));
        assertFalse(Files.exists(tmp.resolve("refused/metrics.jsonl")));
        // filter: the row dropped from the training and the held-out set, said in their lines; two steps train
        Path out = tmp.resolve("run");
        List<String> log = new ArrayList<>();
        var cfg = TrainerTest.small(out, Map.of("data.train", data.toString(), "data.eval", data.toString(), "data.overlong_prompts",
                "filter", "train.max_steps", 2, "train.batch_size", 3, "train.mini_batch_size", 3, "train.samples_every", 1,
                "train.samples_prompts", 3, "eval.before_start", true));
        try (Trainer t = new Trainer(cfg, null, log::add)) {
            t.run(s -> { });
        }
        String dropped = ": 8 rows, fields detected: prompt ← question, gold ← answer; dropped 1 row with a prompt over"
                + " data.max_prompt_tokens=256 (" + data + ": 1); first prompt ";
        assertTrue(log.stream().anyMatch(l -> l.startsWith("data train: " + data + dropped)), log.toString());
        assertTrue(log.stream().anyMatch(l -> l.startsWith("data eval long: " + data + dropped)), log.toString());
        List<JsonNode> metrics = TrainerTest.metrics(out);
        assertEquals(2, metrics.stream().filter(n -> n.has("reward_mean")).count());
        assertTrue(metrics.stream().anyMatch(n -> "long".equals(n.path("eval_set").asText())), metrics.toString());
        for (String l : Files.readAllLines(out.resolve("samples.jsonl"))) {
            assertFalse(Json.MAPPER.readTree(l).get("prompt").asText().contains("long story"), l);
        }
        // the saved config keeps the setting, so a resumed run drops the same rows
        assertEquals("filter", ConfigLoader.YAML.readTree(out.resolve("config.yaml").toFile()).get("data").get("overlong_prompts").asText());
        // and `eval` on the checkpoint, which reads the run's config, evaluates the rows that fit
        var ev = klrl.cli.InProcess.run("eval", "--model", out.resolve("checkpoints/step-000002").toString(), "--data", data.toString(),
                "--k", "1");
        assertEquals(0, ev.code(), ev.err());
        assertEquals(8, Json.MAPPER.readTree(ev.out()).get("eval_examples").asInt(), ev.out());
    }

    @Test
    void badDataFailsBeforeAnyModelLoads() {
        // the model folder does not exist: had it been opened first, the error would name it
        var cfg = TrainerTest.small(tmp.resolve("run"), Map.of("model.path", tmp.resolve("no-model").toString(),
                "data.train", DATA.resolve("null-answer.parquet").toString()));
        UserError e = assertThrows(UserError.class, () -> new Trainer(cfg, null, s -> { }).close());
        assertEquals(DATA.resolve("null-answer.parquet") + ":2: field 'reward_model.ground_truth' is null (expected the gold answer)",
                e.getMessage());
        var struct = TrainerTest.small(tmp.resolve("run2"), Map.of("model.path", tmp.resolve("no-model").toString(),
                "data.train", DATA.resolve("dapo.parquet").toString(), "data.answer_field", "reward_model"));
        UserError s = assertThrows(UserError.class, () -> new Trainer(struct, null, x -> { }).close());
        assertEquals(DATA.resolve("dapo.parquet") + ":1: data.answer_field 'reward_model' is a struct {ground_truth, style};"
                + " did you mean reward_model.ground_truth?", s.getMessage());
    }

    @Test
    void aRunResumesFromAnotherWorkingFolder() throws Exception {
        // relative paths given in one folder; resumed from another
        Path a = Files.createDirectories(tmp.resolve("a")), b = Files.createDirectories(tmp.resolve("b"));
        Files.createDirectories(a.resolve("data"));
        Files.copy(DATA.resolve("verl.parquet"), a.resolve("data/train.parquet"));
        Path yaml = a.resolve("run.yaml");
        Files.writeString(yaml, ConfigLoader.toYaml(TrainerTest.small(Path.of("runs/r"), Map.of("data.train", "data/train.parquet",
                "data.eval", "data/train.parquet", "train.max_steps", 2, "train.batch_size", 3, "train.mini_batch_size", 3,
                "checkpoint.every", 1))));
        assertEquals(0, java(a, "train", "--config", "run.yaml", "--max-steps", "1"));
        Path run = a.resolve("runs/r");
        assertTrue(Files.isDirectory(run.resolve("checkpoints/step-000001")));
        assertEquals(0, java(b, "train", "--resume", run.toString(), "--max-steps", "2"));
        assertEquals(2, TrainerTest.stepLines(run).size());
        assertFalse(Files.exists(b.resolve("runs")), "the resumed run wrote where it was, not in the new working folder");
    }

    /** The trainer in a real process whose working folder is {@code dir}; its exit code. */
    static int java(Path dir, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
                klrl.TestPaths.classPath(), "klrl.cli.Main"));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(300, TimeUnit.SECONDS));
        if (p.exitValue() != 0) {
            System.err.println(out);
        }
        return p.exitValue();
    }

}
