package klrl.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import klrl.TestPaths;
import klrl.model.Tokenizer;
import klrl.util.Json;
import klrl.util.UserError;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The layouts of public data sets — verl's parquet (both field orders, system prompts, shards), TRL's
 * conversational and standard rows, messages, MATH, GSM8K — read from files another writer made
 * (apache-arrow + parquet-wasm, as pyarrow lays them out; see src/test/resources/data/README.md):
 * the prompts the model is fed (through Qwen2.5's real chat template) and the gold answers are exactly
 * the expected strings, and every mistaken field is one line naming the row and the path.
 */
class DataLayoutsTest {
    static final Path DIR = Path.of("src/test/resources/data").toAbsolutePath();
    static final String[] Q = {"What is 17 + 25?", "What is 8 + 13?", "What is 30 + 44?"}, G = {"42", "21", "74"};
    static final String SYS = "You are a careful calculator. Put the final answer in \\boxed{}.";
    static Tokenizer qwen;

    @BeforeAll
    static void tokenizer() {
        qwen = Tokenizer.load(TestPaths.model("qwen2.5"));
    }

    @AfterAll
    static void close() {
        qwen.close();
    }

    static String f(String name) {
        return DIR.resolve(name).toString();
    }

    /** Qwen2.5's rendering of a user turn (its default system prompt when the row has none), generation prompt added. */
    static String qwenPrompt(String system, String user) {
        return "<|im_start|>system\n" + (system != null ? system : "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
                + "<|im_end|>\n<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n";
    }

    static List<String> rendered(List<Example> ex, String template) {
        Prompts p = new Prompts(qwen, new Prompts.Format(template, null, true, 256));
        return ex.stream().map(p::text).toList();
    }

    static void assertProblems(List<Example> ex, String system, String golds) {
        assertEquals(3, ex.size());
        List<String> expected = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            expected.add(qwenPrompt(system, Q[i]));
            assertEquals(Q[i], ex.get(i).question());
            assertEquals(G[i], ex.get(i).goldAnswer());
        }
        // a message list is rendered as it is: data.template applies to plain-text prompts only
        assertEquals(expected, rendered(ex, ex.get(0).messages() != null ? "IGNORED {question}" : "{question}"));
        assertEquals(golds, String.join(",", ex.stream().map(Example::gold).toList()));
    }

    @ParameterizedTest
    @ValueSource(strings = {"verl", "dapo", "verl-system", "trl", "map-null", "gsm8k", "math"})
    void parquetRowsAreTheirJsonlTwinsNestingAndNullsIncluded(String name) throws Exception {
        List<JsonNode> pq = Parquet.rows(DIR.resolve(name + ".parquet"));
        List<String> twin = Files.readAllLines(DIR.resolve(name + ".jsonl"));
        assertEquals(twin.size(), pq.size());
        for (int i = 0; i < pq.size(); i++) {
            assertEquals(Json.MAPPER.readTree(twin.get(i)).toString(), pq.get(i).toString(), name + " row " + (i + 1));
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {".parquet", ".jsonl"})
    void verlRowsInEitherFieldOrderTrainWithNoFieldSettings(String ext) {
        for (String name : new String[] {"verl", "dapo", "map-null"}) {
            Dataset.Loaded l = Dataset.read(f(name + ext), null, null);
            assertProblems(l.examples(), null, "42,21,74");
            assertEquals("3 rows, verl layout: prompt ← prompt, gold ← reward_model.ground_truth", l.describe());
            assertEquals(f(name + ext) + ":2", l.examples().get(1).source());
        }
        // a system + user prompt keeps its system turn
        assertProblems(Dataset.load(f("verl-system" + ext), null, null), SYS, "42,21,74");
        assertEquals(2, Dataset.load(f("verl-system" + ext), null, null).get(0).messages().size());
    }

    @Test
    void trlMathGsm8kAndMessagesRowsAreDetected() {
        assertProblems(Dataset.load(f("trl.parquet"), null, null), null, "42,21,74");
        assertEquals("TRL conversational layout: prompt ← prompt, gold ← solution", Dataset.read(f("trl.jsonl"), null, null).mapping());
        Dataset.Loaded std = Dataset.read(f("trl-standard.jsonl"), null, null);
        assertEquals("TRL standard layout: prompt ← prompt, gold ← solution", std.mapping());
        assertNull(std.examples().get(0).messages());
        assertProblems(std.examples(), null, "42,21,74");
        Dataset.Loaded gsm = Dataset.read(f("gsm8k.parquet"), null, null);
        assertEquals("GSM8K layout: prompt ← question, gold ← answer", gsm.mapping());
        assertProblems(gsm.examples(), null, "17 + 25 = <<17+25=42>>42\n#### 42,8 + 13 = <<8+13=21>>21\n#### 21,"
                + "30 + 44 = <<30+44=74>>74\n#### 74");
        Dataset.Loaded math = Dataset.read(f("math.jsonl"), null, null);
        assertEquals("MATH layout: prompt ← problem, gold ← solution", math.mapping());
        assertEquals("42", math.examples().get(0).goldAnswer());
        Dataset.Loaded msgs = Dataset.read(f("messages.jsonl"), null, null);
        assertEquals("messages layout: prompt ← messages, gold ← messages's last assistant turn", msgs.mapping());
        assertProblems(msgs.examples(), null, "The answer is \\boxed{42}.,The answer is \\boxed{21}.,The answer is \\boxed{74}.");
        assertEquals(1, msgs.examples().get(0).messages().size()); // the assistant's reply is the gold, not the prompt
    }

    @Test
    void aFolderOfShardsAndAGlobReadInNameOrder() {
        Dataset.Loaded shards = Dataset.read(f("shards"), null, null);
        assertProblems(shards.examples(), null, "42,21,74");
        assertEquals("3 rows from 2 files, verl layout: prompt ← prompt, gold ← reward_model.ground_truth", shards.describe());
        assertEquals(f("shards/train-00001-of-00002.parquet") + ":1", shards.examples().get(2).source());
        assertProblems(Dataset.load(f("shards-jsonl"), null, null), null, "42,21,74");
        assertProblems(Dataset.load(f("shards/train-*-of-00002.parquet"), null, null), null, "42,21,74");
        // the dataset's root holds its shards in a subfolder: named, not mixed in
        UserError e = assertThrows(UserError.class, () -> Dataset.load(f("generate"), null, null));
        assertEquals(f("generate") + ": no *.parquet, *.jsonl or *.json data files in this folder", e.getMessage());
        UserError none = assertThrows(UserError.class, () -> Dataset.load(f("shards/test-*.parquet"), null, null));
        assertEquals(f("shards/test-*.parquet") + ": no *.parquet, *.jsonl or *.json data file matches", none.getMessage());
    }

    @Test
    void dottedPathsPickNestedFields() {
        List<Example> ex = Dataset.load(f("verl.parquet"), "extra_info.question", "extra_info.answer");
        assertEquals("What is 8 + 13?", ex.get(1).question());
        assertNull(ex.get(1).messages());
        assertEquals("21", ex.get(1).gold());
        assertEquals("What is 30 + 44?", Dataset.load(f("verl-system.jsonl"), "prompt.1.content", null).get(2).question());
    }

    @Test
    void everyMistakenFieldIsOneLineNamingTheRowAndPath() {
        assertEquals(f("verl.parquet") + ":1: data.answer_field 'reward_model' is a struct {style, ground_truth};"
                + " did you mean reward_model.ground_truth?", error(f("verl.parquet"), null, "reward_model"));
        assertEquals(f("dapo.parquet") + ":1: data.answer_field 'reward_model' is a struct {ground_truth, style};"
                + " did you mean reward_model.ground_truth?", error(f("dapo.parquet"), null, "reward_model"));
        assertEquals(f("dapo.jsonl") + ":1: data.prompt_field 'prompt.0' is a struct {content, role}; did you mean prompt.0.content?",
                error(f("dapo.jsonl"), "prompt.0", null));
        assertEquals(f("map-null.parquet") + ":1: data.answer_field 'meta' is a struct {source, grade}; did you mean meta.source?",
                error(f("map-null.parquet"), null, "meta"));
        assertEquals(f("map-null.parquet") + ":2: data.answer_field 'extra_info.answer' not found (expected the gold answer;"
                + " the row has {data_source, prompt, ability, reward_model, extra_info, meta})",
                error(f("map-null.parquet"), null, "extra_info.answer"));
        assertEquals(f("null-answer.parquet") + ":2: field 'reward_model.ground_truth' is null (expected the gold answer)",
                error(f("null-answer.parquet"), null, null));
        assertEquals(f("null-answer.jsonl") + ":2: field 'reward_model.ground_truth' is null (expected the gold answer)",
                error(f("null-answer.jsonl"), null, null));
        assertEquals(f("trl.parquet") + ":1: data.answer_field 'prompt' is a list of 1 values, not the gold answer"
                + " (a prompt may be a message list [{role, content}, …])", error(f("trl.parquet"), null, "prompt"));
        assertEquals(f("verl.jsonl") + ":1: data.prompt_field 'reward_model.ground_truth.x' not found (expected the prompt;"
                + " the row has {data_source, prompt, ability, reward_model, extra_info})",
                error(f("verl.jsonl"), "reward_model.ground_truth.x", null));
    }

    @Test
    void aRowWithNoAnswerFieldNamesWhatItHas(@org.junit.jupiter.api.io.TempDir Path tmp) throws Exception {
        Path noPrompt = tmp.resolve("p.jsonl");
        Files.writeString(noPrompt, "{\"query\": \"What is 1 + 1?\", \"answer\": \"2\"}\n");
        assertEquals(noPrompt + ":1: no prompt field; expected one of [prompt, problem, question, messages] (the row has"
                + " {query, answer}; set data.prompt_field, a dotted path such as extra_info.question)", error(noPrompt.toString(), null, null));
        Path q = tmp.resolve("q.jsonl");
        Files.writeString(q, "{\"question\": \"What is 1 + 1?\", \"level\": 1}\n");
        assertEquals(q + ":1: no answer field; expected one of [reward_model.ground_truth, answer, solution, gold] (the row has"
                + " {question, level}; set data.answer_field, a dotted path such as reward_model.ground_truth)", error(q.toString(), null, null));
    }

    @Test
    void theLayoutIsDecidedOverManyRowsAndANullInRowOneIsRefusedNotTakenFromAnotherField(@org.junit.jupiter.api.io.TempDir Path tmp)
            throws Exception {
        // MATH-500 / AIME rows {problem, solution, answer} whose first answer is null: the gold is answer, never solution
        Path f = tmp.resolve("math.jsonl");
        String rows = "{\"problem\": \"What is 17 + 25?\", \"solution\": \"So $\\\\boxed{40 + 2}$.\", \"answer\": null}\n"
                + "{\"problem\": \"What is 8 + 13?\", \"solution\": \"So $\\\\boxed{20 + 1}$.\", \"answer\": \"21\"}\n"
                + "{\"problem\": \"What is 30 + 44?\", \"solution\": \"So $\\\\boxed{70 + 4}$.\", \"answer\": \"74\"}\n";
        Files.writeString(f, rows);
        assertEquals(f + ":1: field 'answer' is null (expected the gold answer)", error(f.toString(), null, null));
        // the key missing from row 1 is refused the same way
        Path missing = tmp.resolve("missing.jsonl");
        Files.writeString(missing, rows.replace(", \"answer\": null", ""));
        assertEquals(missing + ":1: field 'answer' not found (expected the gold answer; the row has {problem, solution})",
                error(missing.toString(), null, null));
        // without row 1 the set reads, every gold from answer; and the other field only when it is asked for
        Files.writeString(f, rows.substring(rows.indexOf('\n') + 1));
        Dataset.Loaded l = Dataset.read(f.toString(), null, null);
        assertEquals("MATH layout: prompt ← problem, gold ← answer", l.mapping());
        assertEquals(List.of("21", "74"), l.examples().stream().map(Example::gold).toList());
        assertEquals(List.of("20 + 1", "70 + 4"), Dataset.load(missing.toString(), null, "solution").stream().skip(1)
                .map(Example::goldAnswer).toList());
        // a prompt field first seen past row 1 is the prompt of every row, and row 1 is refused for lacking it
        Path q = tmp.resolve("q.jsonl");
        Files.writeString(q, "{\"question\": \"What is 1 + 1?\", \"answer\": \"2\"}\n{\"problem\": \"What is 2 + 2?\","
                + " \"question\": \"ignored\", \"answer\": \"4\"}\n");
        assertEquals(q + ":1: field 'problem' not found (expected the prompt; the row has {question, answer})",
                error(q.toString(), null, null));
    }

    @Test
    void sftConversationsBesideAProblemAreNotPromptsAndRepliesAreNeverShown(@org.junit.jupiter.api.io.TempDir Path tmp)
            throws Exception {
        // NuminaMath's layout: problem, solution, and the same as an SFT conversation
        Path f = tmp.resolve("numina.jsonl");
        Files.writeString(f, "{\"problem\": \"What is 17 + 25?\", \"solution\": \"So $\\\\boxed{42}$.\", \"messages\": ["
                + "{\"role\": \"user\", \"content\": \"What is 17 + 25?\"}, {\"role\": \"assistant\", \"content\": \"So 42.\"}]}\n");
        Dataset.Loaded l = Dataset.read(f.toString(), null, null);
        assertEquals("MATH layout: prompt ← problem, gold ← solution", l.mapping());
        assertEquals(qwenPrompt(null, Q[0]), rendered(l.examples(), "{question}").get(0));
        assertEquals(f + ":1: data.prompt_field 'messages' ends with an assistant turn, which would be part of the prompt while the"
                + " gold answer is solution; give a prompt without the reply (data.prompt_field)", error(f.toString(), "messages", null));
    }

    @Test
    void aFolderHoldingSeveralSplitsIsRefusedAndGlobsAreChecked(@org.junit.jupiter.api.io.TempDir Path tmp) throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("main"));
        Files.copy(DIR.resolve("gsm8k.jsonl"), dir.resolve("train-00000-of-00001.jsonl"));
        Files.copy(DIR.resolve("gsm8k.jsonl"), dir.resolve("test-00000-of-00001.jsonl"));
        assertEquals(dir + ": holds the splits [test, train]; name one with a glob, e.g. '" + dir.resolve("train") + "-*' (quoted)",
                error(dir.toString(), null, null));
        assertEquals(3, Dataset.load(dir.resolve("train-*").toString(), null, null).size());
        assertEquals(tmp.resolve("x[.jsonl") + ": not a valid glob", error(tmp.resolve("x[.jsonl").toString(), null, null)
                .replaceFirst(" \\(.*", ""));
        // relative to the working folder, as a user types it
        assertEquals(3, Dataset.load("src/test/resources/data/shards/train-*-of-00002.parquet", null, null).size());
    }

    @Test
    void jsonlWithAByteOrderMarkReadsAndAJsonArrayIsExplained(@org.junit.jupiter.api.io.TempDir Path tmp) throws Exception {
        Path bom = tmp.resolve("bom.jsonl");
        Files.writeString(bom, "\uFEFF" + Files.readString(DIR.resolve("gsm8k.jsonl")));
        assertEquals(3, Dataset.load(bom.toString(), null, null).size());
        Path arr = tmp.resolve("arr.jsonl");
        Files.writeString(arr, "[{\"question\": \"1+1\", \"answer\": \"2\"}]\n");
        assertEquals(arr + ":1: expected a JSON object per line, found an array (a .jsonl file holds one JSON object per line;"
                + " a file holding one array of rows is read as such when its name ends in .json)",
                error(arr.toString(), null, null));
    }

    @Test
    void commaListsSplitOutsideBraces() {
        assertEquals(List.of("a/{x,y}.jsonl", "b.jsonl", "bundled:arith-test"), Dataset.specs("a/{x,y}.jsonl, b.jsonl,,bundled:arith-test"));
    }

    static String error(String file, String prompt, String answer) {
        return assertThrows(UserError.class, () -> Dataset.load(file, prompt, answer)).getMessage();
    }

    @Test
    void aBundledSetKeepsItsOwnFieldsWhateverDataFieldsSay() {
        assertEquals(400, Dataset.load(Dataset.BUNDLED_TEST, "prompt.0.content", "reward_model.ground_truth").size());
    }

    @Test
    void aMessageListPromptWithoutAChatTemplateIsRefused() {
        Example e = Dataset.load(f("trl.jsonl"), null, null).get(0);
        Prompts plain = new Prompts(qwen, new Prompts.Format("{question}", null, false, 256));
        UserError u = assertThrows(UserError.class, () -> plain.text(e));
        assertEquals(f("trl.jsonl") + ":1: the prompt is a message list, which the model's chat template renders;"
                + " data.chat_template is false", u.getMessage());
    }
}
